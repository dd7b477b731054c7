package version

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func fakeProbe(tools map[string]string, outputs map[string]string) Probe {
	return Probe{
		LookPath: func(name string) (string, error) {
			if p, ok := tools[name]; ok {
				return p, nil
			}
			return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
		},
		Output: func(_ context.Context, name string, args ...string) ([]byte, error) {
			if out, ok := outputs[strings.Join(append([]string{name}, args...), " ")]; ok {
				return []byte(out), nil
			}
			return nil, errors.New("exit status 1")
		},
	}
}

func TestBackendsProxmox(t *testing.T) {
	p := fakeProbe(map[string]string{"runc": "/usr/sbin/runc", "crun": "/usr/bin/crun", "/usr/sbin/pct": "/usr/sbin/pct"},
		map[string]string{
			"/usr/sbin/runc --version":                  "runc version 1.1.5\ncommit: x\n",
			"/usr/bin/crun --version":                   "crun version 1.8.1\n",
			"dpkg-query -W -f ${Version} pve-container": "6.0.15",
			"pveversion -v":                             "proxmox-ve: 9.1\npve-container: 6.0.9\n",
		})
	p.Pct = "/usr/sbin/pct"
	got := Backends(context.Background(), p)
	want := []Backend{{"runc", "/usr/sbin/runc", "runc version 1.1.5", nil}, {"crun", "/usr/bin/crun", "crun version 1.8.1", nil},
		{"pve-container", "/usr/sbin/pct", "6.0.15", nil}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestBackendsPveversionFallbackAndBareHost(t *testing.T) {
	p := fakeProbe(map[string]string{"pct": "/usr/sbin/pct"}, map[string]string{"pveversion -v": "proxmox-ve: 8.4\npve-container: 5.2.7\n"})
	got := Backends(context.Background(), p)
	if len(got) != 3 || got[0].Err == nil || got[1].Err == nil || got[2].Version != "5.2.7" {
		t.Errorf("got %+v", got)
	}
	// No pct: no pve-container line at all.
	got = Backends(context.Background(), fakeProbe(map[string]string{"runc": "/r"}, map[string]string{"/r --version": "runc version 1\n"}))
	if len(got) != 2 || got[0].Version != "runc version 1" {
		t.Errorf("bare host: %+v", got)
	}
	// The real host: runc and crun are installed here.
	for _, b := range Backends(context.Background(), Probe{}) {
		if (b.Name == "runc" || b.Name == "crun") && (b.Err != nil || !strings.Contains(b.Version, "version")) {
			t.Errorf("real %s: %+v", b.Name, b)
		}
	}
}
