package ocirun

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/state"
)

// The state of a runc or crun container read from the runtime's own
// state directory, without running the runtime: what `<runtime> state`
// computes, for the passthrough (internal/fastpath), where starting runc
// just to print its state would cost more than nexcage itself.
//
// runc 1.1 keeps <root>/<id>/state.json (libcontainer's State); crun 1.8
// keeps <root>/<id>/status and a copy of the bundle's config.json. Both
// keep exec.fifo in the directory from create until start. Both decide
// the status alike: the init (pid and its start time) gone or a zombie
// is stopped; else a frozen cgroup is paused; else exec.fifo present is
// created; else running.

// ErrUnknownLayout is returned by ReadState when the runtime's files are
// not what it knows; the caller asks the runtime instead.
var ErrUnknownLayout = errors.New("unknown runtime state layout")

type runcState struct {
	ID        string            `json:"id"`
	Pid       int               `json:"init_process_pid"`
	Start     uint64            `json:"init_process_start"`
	Created   time.Time         `json:"created"`
	CgroupDir map[string]string `json:"cgroup_paths"`
	Config    struct {
		Version string   `json:"version"`
		Rootfs  string   `json:"rootfs"`
		Labels  []string `json:"labels"`
	} `json:"config"`
}

type crunStatus struct {
	Pid        int       `json:"pid"`
	Start      uint64    `json:"process-start-time"`
	CgroupPath string    `json:"cgroup-path"`
	Rootfs     string    `json:"rootfs"`
	Bundle     string    `json:"bundle"`
	Created    time.Time `json:"created"`
}

// ReadState returns the state of container id of runtime name ("runc" or
// "crun") from its state directory dir (<root>/<id>). The ociVersion is
// the bundle's, which the runtime keeps (as nexcage's records do).
func ReadState(name, dir, id string) (*state.Container, error) {
	c := &state.Container{ID: id, Backend: name}
	var pid int
	var start uint64
	var paused func() bool
	switch name {
	case "runc":
		var s runcState
		if err := readJSON(filepath.Join(dir, "state.json"), &s); err != nil {
			return nil, err
		}
		if s.ID != id {
			return nil, ErrUnknownLayout
		}
		pid, start = s.Pid, s.Start
		c.OCIVersion, c.Rootfs, c.Created = s.Config.Version, s.Config.Rootfs, s.Created
		for _, l := range s.Config.Labels {
			k, v, _ := strings.Cut(l, "=")
			if k == "bundle" {
				c.Bundle = v
				continue
			}
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			c.Annotations[k] = v
		}
		paused = func() bool {
			if p, ok := s.CgroupDir["freezer"]; ok {
				return fileIs(filepath.Join(p, "freezer.state"), "FROZEN")
			}
			if p, ok := s.CgroupDir[""]; ok {
				return fileIs(filepath.Join(p, "cgroup.freeze"), "1")
			}
			return false
		}
	case "crun":
		var s crunStatus
		if err := readJSON(filepath.Join(dir, "status"), &s); err != nil {
			return nil, err
		}
		var spec struct {
			OCIVersion  string            `json:"ociVersion"`
			Annotations map[string]string `json:"annotations"`
		}
		if err := readJSON(filepath.Join(dir, "config.json"), &spec); err != nil {
			return nil, err
		}
		pid, start = s.Pid, s.Start
		c.OCIVersion, c.Bundle, c.Created, c.Annotations = spec.OCIVersion, s.Bundle, s.Created, spec.Annotations
		c.Rootfs = state.AbsRootfs(s.Bundle, s.Rootfs)
		paused = func() bool {
			if fi, err := os.Stat(filepath.Join(CgroupRoot, "freezer")); err == nil && fi.IsDir() {
				return fileIs(filepath.Join(CgroupRoot, "freezer", s.CgroupPath, "freezer.state"), "FROZEN")
			}
			return fileIs(filepath.Join(CgroupRoot, s.CgroupPath, "cgroup.freeze"), "1")
		}
	default:
		return nil, ErrUnknownLayout
	}
	if c.Bundle == "" || pid <= 0 {
		return nil, ErrUnknownLayout
	}
	switch {
	case !Alive(pid, start):
		c.Status = state.Stopped
	case paused():
		c.Status, c.Pid = state.Paused, pid
	case exists(filepath.Join(dir, "exec.fifo")):
		c.Status, c.Pid = state.Created, pid
	default:
		c.Status, c.Pid = state.Running, pid
	}
	return c, nil
}

// Alive tells whether pid is a live (not zombie) process started at
// start (field 22 of /proc/<pid>/stat, clock ticks since boot), as runc
// and crun check their init.
func Alive(pid int, start uint64) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state), f[19] field 22 (starttime).
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && st == start
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return ErrUnknownLayout
	}
	return nil
}

func fileIs(path, want string) bool {
	data, err := os.ReadFile(path)
	return err == nil && strings.TrimSpace(string(data)) == want
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
