package pvecfg

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"

	"github.com/google/renameio/v2"
)

// VMList is /etc/pve/.vmlist: every guest of the cluster.
type VMList struct {
	Version int                    `json:"version"`
	IDs     map[string]VMListEntry `json:"ids,omitempty"`
}

// VMListEntry says where a guest lives.
type VMListEntry struct {
	Node    string `json:"node"`
	Type    string `json:"type"` // "lxc" or "qemu"
	Version int    `json:"version"`
}

// ParseVMList parses .vmlist JSON. Empty input is an empty list.
func ParseVMList(data []byte) (*VMList, error) {
	l := &VMList{}
	if len(data) == 0 {
		l.IDs = map[string]VMListEntry{}
		return l, nil
	}
	if err := json.Unmarshal(data, l); err != nil {
		return nil, fmt.Errorf("parse .vmlist: %w", err)
	}
	if l.IDs == nil {
		l.IDs = map[string]VMListEntry{}
	}
	return l, nil
}

// ReadVMList reads a .vmlist file; a missing file is an empty list.
func ReadVMList(path string) (*VMList, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return ParseVMList(nil)
	}
	if err != nil {
		return nil, err
	}
	return ParseVMList(data)
}

// Marshal writes the list as JSON; with no guests only the version is kept,
// as pmxcfs writes it.
func (l *VMList) Marshal() ([]byte, error) {
	out := *l
	if len(out.IDs) == 0 {
		out.IDs = nil
	}
	b, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Write stores the list atomically at path.
func (l *VMList) Write(path string) error {
	b, err := l.Marshal()
	if err != nil {
		return err
	}
	return renameio.WriteFile(path, b, 0o640)
}

// Lookup returns the entry of vmid.
func (l *VMList) Lookup(vmid int) (VMListEntry, bool) {
	e, ok := l.IDs[strconv.Itoa(vmid)]
	return e, ok
}

// Add registers vmid and bumps the list version.
func (l *VMList) Add(vmid int, e VMListEntry) {
	if l.IDs == nil {
		l.IDs = map[string]VMListEntry{}
	}
	l.IDs[strconv.Itoa(vmid)] = e
	l.Version++
}

// Remove drops vmid and bumps the list version.
func (l *VMList) Remove(vmid int) {
	delete(l.IDs, strconv.Itoa(vmid))
	l.Version++
}

// VMIDs returns all ids, sorted.
func (l *VMList) VMIDs() []int {
	ids := make([]int, 0, len(l.IDs))
	for k := range l.IDs {
		if n, err := strconv.Atoi(k); err == nil {
			ids = append(ids, n)
		}
	}
	sort.Ints(ids)
	return ids
}

// NextID is the lowest free id in [lo, hi] (pvesh get /cluster/nextid),
// or 0 when the range is full.
func (l *VMList) NextID(lo, hi int) int {
	for id := lo; id <= hi; id++ {
		if _, ok := l.IDs[strconv.Itoa(id)]; !ok {
			return id
		}
	}
	return 0
}
