package pvecfg

import (
	"path/filepath"
	"reflect"
	"testing"
)

const sampleStorage = `dir: local
	path /var/lib/vz
	content iso,vztmpl,backup

lvmthin: local-lvm
	thinpool data
	vgname pve
	content rootdir,images
	disable
`

func TestStorageConfig(t *testing.T) {
	list, err := ParseStorageConfig([]byte(sampleStorage))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "local" || list[0].Path != "/var/lib/vz" || list[1].Type != "lvmthin" {
		t.Fatalf("%+v", list)
	}
	if list[0].HasContent("rootdir") || !list[1].HasContent("rootdir") || !list[0].HasContent("vztmpl") {
		t.Error("HasContent")
	}
	if list[1].Props["disable"] != "1" {
		t.Error("bare property")
	}
	out, err := MarshalStorageConfig(list)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseStorageConfig(out)
	if err != nil || !reflect.DeepEqual(back, list) {
		t.Fatalf("round trip: %v\n%s", err, out)
	}
	if _, err := ParseStorageConfig([]byte("\tpath /x\n")); err == nil {
		t.Error("property outside a stanza accepted")
	}
	if _, err := MarshalStorageConfig([]Storage{{Type: "dir", Name: "a", Path: "/x\nevil 1"}}); err == nil {
		t.Error("newline accepted")
	}
}

func TestVMList(t *testing.T) {
	l, err := ParseVMList([]byte(`{"version": 7, "ids": {"100": {"node": "pve1", "type": "lxc", "version": 3}, "101": {"node":"pve2","type":"qemu","version":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := l.Lookup(101); !ok || e.Node != "pve2" || e.Type != "qemu" {
		t.Error(e, ok)
	}
	if l.NextID(100, 1000000) != 102 {
		t.Error("nextid")
	}
	l.Add(102, VMListEntry{Node: "pve", Type: "lxc", Version: 1})
	l.Remove(100)
	if !reflect.DeepEqual(l.VMIDs(), []int{101, 102}) || l.Version != 9 {
		t.Error(l.VMIDs(), l.Version)
	}
	p := filepath.Join(t.TempDir(), ".vmlist")
	if err := l.Write(p); err != nil {
		t.Fatal(err)
	}
	back, err := ReadVMList(p)
	if err != nil || !reflect.DeepEqual(back, l) {
		t.Fatal(err, back)
	}
	empty := &VMList{Version: 3, IDs: map[string]VMListEntry{}}
	b, _ := empty.Marshal()
	if string(b) != "{\n  \"version\": 3\n}\n" {
		t.Errorf("%q", b)
	}
	missing, err := ReadVMList(filepath.Join(t.TempDir(), "none"))
	if err != nil || len(missing.IDs) != 0 {
		t.Error(err)
	}
}
