package proxmox

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/netsetup"
)

func appAnn(sandbox string) map[string]string {
	a := map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.container-name": "app", "io.kubernetes.cri.sandbox-namespace": "lab", "io.kubernetes.cri.sandbox-name": "web"}
	if sandbox != "" {
		a["io.kubernetes.cri.sandbox-id"] = sandbox
	}
	return a
}

// joinPid makes the spec's network, IPC and UTS namespaces pid's, as CRI
// writes them for an app container (pid: the sandbox's task).
func joinPid(pid int) func(*specs.Spec) {
	return func(s *specs.Spec) {
		for i, ns := range s.Linux.Namespaces {
			switch ns.Type {
			case specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace:
				s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/%s", pid, nsFile(ns.Type))
			}
		}
	}
}

func sandboxAnn() map[string]string {
	return map[string]string{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-namespace": "lab", "io.kubernetes.cri.sandbox-name": "web"}
}

// TestCreateRefusesWhatProxmoxPodsCannotDo: a sandbox asking for the
// host's namespaces, a namespace to join, privileges, devices or no CNI
// network, and an app container whose namespaces are not a Proxmox
// pod's sandbox's or that asks for privileges or devices, are refused by
// name, with the pod and the way out, before any pct call, checkpoint or
// helper file.
func TestCreateRefusesWhatProxmoxPodsCannotDo(t *testing.T) {
	withoutNS := func(typ specs.LinuxNamespaceType) func(*specs.Spec) {
		return func(s *specs.Spec) {
			var keep []specs.LinuxNamespace
			for _, ns := range s.Linux.Namespaces {
				if ns.Type != typ {
					keep = append(keep, ns)
				}
			}
			s.Linux.Namespaces = keep
		}
	}
	setPath := func(typ specs.LinuxNamespaceType, p string) func(*specs.Spec) {
		return func(s *specs.Spec) {
			for i := range s.Linux.Namespaces {
				if s.Linux.Namespaces[i].Type == typ {
					s.Linux.Namespaces[i].Path = p
				}
			}
		}
	}
	cniNS := setPath(specs.NetworkNamespace, "/var/run/netns/cni-x")
	for _, tc := range []struct {
		name string
		ann  map[string]string
		edit []func(*specs.Spec)
		want string
	}{
		{"app container without sandbox id", appAnn(""), nil,
			"container ct1: container app of Kubernetes pod lab/web: the bundle names no sandbox (annotation io.kubernetes.cri.sandbox-id)"},
		{"CRI-O app container", map[string]string{"io.kubernetes.cri-o.ContainerType": "container"}, nil, "container ? of Kubernetes pod ?/?"},
		{"app container with its own network", appAnn("sb1"), nil, "its network namespace (\"\") is not its sandbox's"},
		{"app container joining a non-supervisor", appAnn("sb1"), []func(*specs.Spec){joinPid(os.Getpid())}, "is not a Proxmox pod's (its sandbox runs on another backend)"},
		{"app container with a device", appAnn("sb1"), []func(*specs.Spec){joinPid(os.Getpid()), func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}
		}}, "devices and sysctls (linux.devices, linux.sysctl) are not given to a pod's app container"},
		{"privileged app container", appAnn("sb1"), []func(*specs.Spec){joinPid(os.Getpid()), func(s *specs.Spec) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
		}}, "a privileged container (CAP_SYS_ADMIN"},
		{"no CNI netns", sandboxAnn(), nil, "the sandbox (pause container) of Kubernetes pod lab/web: the sandbox has no CNI network namespace"},
		{"hostNetwork", sandboxAnn(), []func(*specs.Spec){withoutNS(specs.NetworkNamespace)}, "shares the host's network namespace (hostNetwork)"},
		{"hostPID", sandboxAnn(), []func(*specs.Spec){cniNS, withoutNS(specs.PIDNamespace)}, "(hostPID)"},
		{"hostIPC", sandboxAnn(), []func(*specs.Spec){cniNS, withoutNS(specs.IPCNamespace)}, "(hostIPC)"},
		{"joined ipc", sandboxAnn(), []func(*specs.Spec){cniNS, setPath(specs.IPCNamespace, "/proc/1/ns/ipc")}, "joins an existing ipc namespace (/proc/1/ns/ipc)"},
		{"privileged", sandboxAnn(), []func(*specs.Spec){cniNS, func(s *specs.Spec) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
		}}, "a privileged pod (CAP_SYS_ADMIN"},
		{"devices", sandboxAnn(), []func(*specs.Spec){cniNS, func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}
		}}, "devices (linux.devices)"},
		{"CNI netns without eth0", sandboxAnn(), []func(*specs.Spec){setPath(specs.NetworkNamespace, "/proc/self/ns/net/nonexistent")}, "the pod's network cannot be taken over by a Proxmox container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeNode(t, "", "")
			var cps []string
			c, opts := createOpts(t, &cps)
			opts.Spec.Annotations = tc.ann
			if opts.Spec.Process.Capabilities == nil {
				opts.Spec.Process.Capabilities = &specs.LinuxCapabilities{}
			}
			for _, e := range tc.edit {
				e(opts.Spec)
			}
			err := f.backend.Create(context.Background(), c, opts)
			if errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nexcage-runc") {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
			if _, err := os.Stat(f.log); !os.IsNotExist(err) || len(filesUnder(t, f.backend.helperBase())) != 0 {
				t.Errorf("side effects before the refusal (pct log %v, helper files %v)", err, filesUnder(t, f.backend.helperBase()))
			}
			if c.Data[DataPodLink] != "" {
				t.Errorf("a pod link recorded for a refused bundle: %v", c.Data)
			}
		})
	}
}

// TestTranslatePodNetwork: a sandbox's CT has no net0; the CNI interface
// is a phys eth0 (raw lxc.net.32.*) which the init helper configures
// with the address and route read from the pod's namespace.
func TestTranslatePodNetwork(t *testing.T) {
	in := baseInput(t)
	in.Pod = &PodNetwork{Link: "nxp0a1b2c3d", Interface: netsetup.Interface{Name: "eth0", Mode: netsetup.ModeStatic, Address: "10.250.7.5/24", Gateway: "10.250.7.1"}}
	req, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := req.Option("net0"); ok {
		t.Errorf("net0 = %q for a pod's CT", v)
	}
	var raw []string
	for _, r := range req.Raw {
		if strings.HasPrefix(r.Key, "lxc.net.") {
			raw = append(raw, r.Key+"="+r.Value)
		}
	}
	if got, want := strings.Join(raw, " "), "lxc.net.32.type=phys lxc.net.32.link=nxp0a1b2c3d lxc.net.32.name=eth0 lxc.net.32.flags=up"; got != want {
		t.Errorf("raw net keys = %s, want %s", got, want)
	}
	if req.Net == nil || len(req.Net.Interfaces) != 1 || req.Net.Interfaces[0] != in.Pod.Interface || req.Net.ResolvPath != "" {
		t.Errorf("helper network = %+v", req.Net)
	}
	in.Pod.Link = "bad name"
	if _, err := Translate(in); err == nil {
		t.Error("a pod link that is no interface name was accepted")
	}
}

// TestPodSandboxSpec: containerd's /dev/shm bind becomes a tmpfs of the
// CT's own and file binds are bound from copies in the helper directory;
// the caller's spec is not changed.
func TestPodSandboxSpec(t *testing.T) {
	src := t.TempDir()
	hosts := src + "/hosts"
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	helper := t.TempDir()
	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/dev/shm", Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
		{Destination: "/etc/hosts", Type: "bind", Source: hosts, Options: []string{"rbind", "ro"}},
		{Destination: "/proc", Type: "proc", Source: "proc"},
	}}
	got, err := podSandboxSpec("ct1", spec, helper)
	if err != nil {
		t.Fatal(err)
	}
	if m := got.Mounts[0]; m.Type != "tmpfs" || m.Destination != "/dev/shm" || strings.Join(m.Options, ",") != "nosuid,noexec,nodev,mode=1777" {
		t.Errorf("/dev/shm = %+v", m)
	}
	if m := got.Mounts[1]; m.Source != helper+"/pod/1-hosts" {
		t.Errorf("/etc/hosts = %+v", m)
	} else if data, err := os.ReadFile(m.Source); err != nil || string(data) != "127.0.0.1 localhost\n" {
		t.Errorf("copy of hosts: %q %v", data, err)
	}
	if got.Mounts[2].Type != "proc" || spec.Mounts[0].Type != "bind" || spec.Mounts[1].Source != hosts {
		t.Errorf("mounts changed wrongly: %+v (caller's %+v)", got.Mounts, spec.Mounts)
	}
}
