package netsetup

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// podChildEnv makes the test binary run TakePodInterface or
// GivePodInterfaceBack ("take|back <netns path> <ifname> <tmp>") in the
// network namespace it was started in: a namespace the test created
// stands in for the host's, which the tests never touch.
const podChildEnv = "NETSETUP_TEST_POD_CHILD"

func podChildMain(op string) int {
	f := strings.Fields(op)
	if len(f) != 4 {
		return 2
	}
	var err error
	switch f[0] {
	case "take":
		err = TakePodInterface(f[1], f[2], f[3])
	case "back":
		err = GivePodInterfaceBack(f[1], f[2], f[3])
	default:
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// inHost runs a pod operation with n.br as the host's namespace.
func (n *testNet) inHost(t *testing.T, op string) error {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.br, os.Args[0])
	cmd.Env = append(os.Environ(), podChildEnv+"="+op)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func hasLink(t *testing.T, ns, name string) bool {
	t.Helper()
	return exec.Command("ip", "-n", ns, "link", "show", name).Run() == nil
}

// TestPodInterfaceRoundTrip: the pod interface's address and default
// route are read; taking it moves it out of the pod's namespace under
// its temporary name; giving it back restores it under its CNI name
// (twice is a no-op); with the pod's namespace gone it is deleted.
func TestPodInterfaceRoundTrip(t *testing.T) {
	n := newTestNet(t)
	run(t, "ip", "-n", n.ct, "addr", "add", "198.51.100.5/24", "dev", "eth0")
	run(t, "ip", "-n", n.ct, "link", "set", "eth0", "up")
	run(t, "ip", "-n", n.ct, "route", "add", "default", "via", "198.51.100.1")
	pod := "/run/netns/" + n.ct
	ifc, err := ReadPodInterface(pod, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Interface{Name: "eth0", Mode: ModeStatic, Address: "198.51.100.5/24", Gateway: "198.51.100.1"}); ifc != want {
		t.Fatalf("read %+v, want %+v", ifc, want)
	}
	tmp := randName("nxp")
	if err := n.inHost(t, "take "+pod+" eth0 "+tmp); err != nil {
		t.Fatal(err)
	}
	if hasLink(t, n.ct, "eth0") || !hasLink(t, n.br, tmp) {
		t.Fatalf("after take: eth0 in the pod %v, %s on the host %v", hasLink(t, n.ct, "eth0"), tmp, hasLink(t, n.br, tmp))
	}
	if err := n.inHost(t, "take "+pod+" eth0 "+tmp); err == nil {
		t.Fatal("a second take succeeded")
	}
	for i := 0; i < 2; i++ {
		if err := n.inHost(t, "back "+pod+" eth0 "+tmp); err != nil {
			t.Fatal(err)
		}
	}
	if up, _ := n.link(t, "eth0"); !up || hasLink(t, n.br, tmp) {
		t.Fatalf("after giving back: eth0 up %v, %s still on the host %v", up, tmp, hasLink(t, n.br, tmp))
	}
	// The pod's namespace is gone: the link is deleted (with its peer).
	if err := n.inHost(t, "take "+pod+" eth0 "+tmp); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "del", n.ct)
	if err := n.inHost(t, "back "+pod+" eth0 "+tmp); err != nil {
		t.Fatal(err)
	}
	if hasLink(t, n.br, tmp) || hasLink(t, n.br, "srv0") {
		t.Fatalf("links left on the host: %s", run(t, "ip", "-n", n.br, "-o", "link"))
	}
}

// TestReadPodInterfaceRefuses what the init helper could not re-apply.
func TestReadPodInterfaceRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup [][]string
		want  string
	}{
		{"no address", nil, "has 0 IPv4 addresses"},
		{"two addresses", [][]string{{"addr", "add", "198.51.100.5/24", "dev", "eth0"}, {"addr", "add", "198.51.100.6/24", "dev", "eth0"}}, "has 2 IPv4 addresses"},
		{"global IPv6", [][]string{{"addr", "add", "198.51.100.5/24", "dev", "eth0"}, {"addr", "add", "2001:db8::5/64", "dev", "eth0", "nodad"}}, "IPv6 pod networks are not carried"},
		{"extra route", [][]string{{"addr", "add", "198.51.100.5/24", "dev", "eth0"}, {"link", "set", "eth0", "up"}, {"route", "add", "203.0.113.0/24", "via", "198.51.100.1"}}, "has the route"},
		{"no such interface", nil, "has no interface eth1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t)
			for _, a := range tc.setup {
				run(t, append([]string{"ip", "-n", n.ct}, a...)...)
			}
			name := "eth0"
			if tc.name == "no such interface" {
				name = "eth1"
			}
			if _, err := ReadPodInterface("/run/netns/"+n.ct, name); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
