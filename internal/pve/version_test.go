package pve

import "testing"

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
