package pve

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePveversion(t *testing.T) {
	out := "proxmox-ve: 8.4.0 (running kernel: 6.8.12-9-pve)\npve-manager: 8.4.1 (running version: 8.4.1/2a5fa54a8503f96d)\npve-container: 5.3.5\nlxc-pve: 6.0.0-1\n"
	v, err := ParsePveversion(out)
	if err != nil {
		t.Fatal(err)
	}
	if v.Manager != "8.4.1" || v.Container != "5.3.5" || v.LXC != "6.0.0-1" {
		t.Fatalf("parsed %+v", v)
	}
	if v.HasOCI() || v.HasInitCwd() || v.HasInitUser() {
		t.Errorf("8.4 has no 9.x features: %+v", v)
	}
	if _, err := ParsePveversion("pve-manager: 9.1.1\n"); err == nil {
		t.Error("missing pve-container accepted")
	}
	for c, want := range map[string][3]bool{
		"6.0.1": {false, true, false}, "6.0.15": {true, true, false}, "6.0.18": {true, true, false},
		"6.1.0": {true, true, true}, "6.1.10": {true, true, true}, "10.0": {true, true, true}, "6.0": {false, false, false},
	} {
		v := NodeVersion{Container: c}
		if got := [3]bool{v.HasOCI(), v.HasInitCwd(), v.HasInitUser()}; got != want {
			t.Errorf("%s: got %v, want %v", c, got, want)
		}
	}
	if (NodeVersion{}).HasInitCwd() {
		t.Error("unknown version has features")
	}
}

func TestNodeVersionSummary(t *testing.T) {
	for _, c := range []struct {
		v    NodeVersion
		want string
	}{
		{NodeVersion{Manager: "8.4.1", Container: "5.3.5"}, "PVE 8.4 (pve-container 5.3.5)"},
		{NodeVersion{Manager: "9.1.1", Container: "6.0.18"}, "PVE 9.1 (pve-container 6.0.18)"},
		{NodeVersion{Container: "6.0.18"}, "pve-container 6.0.18"},
		{NodeVersion{}, "unknown"},
	} {
		if got := c.v.Summary(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.v, got, c.want)
		}
	}
}

// TestCheckRawKeyOn is the per-version list of proxmox-pct.md §9.3: a key
// an older node drops is refused for it, naming the version that keeps it.
func TestCheckRawKeyOn(t *testing.T) {
	pve84 := NodeVersion{Manager: "8.4.1", Container: "5.3.5"}
	pve90 := NodeVersion{Manager: "9.0.3", Container: "6.0.9"}
	pve91 := NodeVersion{Manager: "9.1.1", Container: "6.0.18"}
	pve91late := NodeVersion{Manager: "9.1.4", Container: "6.1.10"}
	unknown := NodeVersion{}
	nodes := []NodeVersion{unknown, pve84, pve90, pve91, pve91late}
	for key, ok := range map[string][5]bool{
		"lxc.init.cmd":                   {true, true, true, true, true},
		"lxc.mount.entry":                {true, true, true, true, true},
		"lxc.environment":                {true, true, true, true, true},
		"lxc.prlimit.nofile":             {true, true, true, true, true},
		"lxc.sysctl.kernel.msgmax":       {true, true, true, true, true},
		"lxc.init.cwd":                   {false, false, true, true, true},
		"lxc.environment.runtime":        {false, false, false, true, true},
		"lxc.environment.hooks":          {false, false, false, true, true},
		"lxc.init.uid":                   {false, false, false, false, true},
		"lxc.init.gid":                   {false, false, false, false, true},
		"lxc.init.groups":                {false, false, false, false, true},
		"lxc.sysctl.net.ipv4.ip_forward": {false, false, false, false, false},
		"lxc.no_new_privs":               {false, false, false, false, false},
		"lxc.namespace.share.net":        {false, false, false, false, false},
	} {
		for i, n := range nodes {
			err := CheckRawKeyOn(n, key)
			if (err == nil) != ok[i] {
				t.Errorf("%s on %s: err %v, want accepted=%v", key, n.Summary(), err, ok[i])
			}
		}
	}
	err := CheckRawKeyOn(pve84, "lxc.init.uid")
	var ne *NodeRawKeyError
	if !errors.As(err, &ne) || ne.MinContainer != "6.1.0" || ne.MinPVE != "9.1" {
		t.Fatalf("error %#v", err)
	}
	if want := "lxc key 'lxc.init.uid' is kept only from pve-container 6.1.0 (PVE 9.1); this node (PVE 8.4 (pve-container 5.3.5)) drops it with 'unable to parse config'"; err.Error() != want {
		t.Errorf("message %q\nwant    %q", err, want)
	}
	if err := CheckRawKeyOn(unknown, "lxc.init.cwd"); err == nil || !strings.Contains(err.Error(), "unknown version") {
		t.Errorf("unknown node: %v", err)
	}
}

func TestDroppedRawKeys(t *testing.T) {
	for v, want := range map[string]string{
		"5.3.5":  "lxc.environment.hooks lxc.environment.runtime lxc.init.cwd lxc.init.gid lxc.init.groups lxc.init.uid",
		"6.0.9":  "lxc.environment.hooks lxc.environment.runtime lxc.init.gid lxc.init.groups lxc.init.uid",
		"6.0.18": "lxc.init.gid lxc.init.groups lxc.init.uid",
		"6.1.10": "",
	} {
		if got := strings.Join(DroppedRawKeys(NodeVersion{Container: v}), " "); got != want {
			t.Errorf("%s: %q, want %q", v, got, want)
		}
	}
	if len(DroppedRawKeys(NodeVersion{})) != 6 {
		t.Error("an unknown node keeps some versioned keys")
	}
}
