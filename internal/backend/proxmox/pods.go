package proxmox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/netsetup"
	"github.com/nexcage/nexcage/internal/state"
	"github.com/nexcage/nexcage/internal/supervisor"
)

// A Kubernetes pod routed to the Proxmox backend is one Proxmox container
// (docs/KUBERNETES.md, "Proxmox pods"). Its sandbox (the pause container
// CRI asks for first) is the CT: the pause image's rootfs, nexcage's init
// helper as init, which runs the pause process. The pod's network is the
// one CNI configured in the sandbox's network namespace: create takes
// its interface out of that namespace and gives it to the CT as an LXC
// phys interface (raw lxc.net.<N>.* keys, which Proxmox keeps), and the
// init helper re-applies its address and default route inside; the
// sandbox's supervisor gives it back to the namespace when the CT has
// stopped, before containerd runs CNI's DEL there. App containers are
// process trees inside the CT (podcontainer.go).

// annotationCRIOContainerType is CRI-O's counterpart of
// config.AnnotationContainerType.
const annotationCRIOContainerType = "io.kubernetes.cri-o.ContainerType"

// Keys of state.Container.Data for a pod's sandbox.
const (
	DataPodNetns  = "pod_netns"  // the CNI network namespace (path)
	DataPodIfName = "pod_ifname" // the CNI interface's name there
	DataPodLink   = "pod_link"   // its name on the host while the CT has it
)

// podIfName is the interface CRI runtimes ask CNI to create in a pod's
// network namespace (containerd's and CRI-O's default).
const podIfName = "eth0"

// podLinkPrefix starts the host names of pod interfaces in transit
// ("nxp" + 8 hex digits: unique and within IFNAMSIZ).
const podLinkPrefix = "nxp"

// PodNetwork is the pod network a sandbox's CT takes over: Link is the
// CNI interface's name on the host (the phys link), Interface what the
// init helper configures on it inside (eth0, static).
type PodNetwork struct {
	Link      string
	Interface netsetup.Interface
}

// podInfo is what the CRI annotations say about a bundle.
type podInfo struct {
	sandbox        bool // the pod's sandbox (pause container)
	namespace, pod string
	container      string
}

// podOf reads the CRI annotations: nil for a bundle that is no pod's.
func podOf(spec *specs.Spec) *podInfo {
	if spec == nil {
		return nil
	}
	ann := spec.Annotations
	typ, ok := ann[config.AnnotationContainerType]
	if !ok {
		typ, ok = ann[annotationCRIOContainerType]
	}
	if !ok {
		return nil
	}
	return &podInfo{sandbox: typ == config.ContainerTypeSandbox,
		namespace: orDefault(ann[config.AnnotationSandboxNamespace], "?"), pod: orDefault(ann[config.AnnotationSandboxName], "?"),
		container: orDefault(ann[config.AnnotationContainerName], "?")}
}

func (p *podInfo) what() string {
	if p.sandbox {
		return "the sandbox (pause container)"
	}
	return "container " + p.container
}

// refuse is the by-name refusal of something the pod asks for.
func (p *podInfo) refuse(id, format string, a ...any) *errs.Error {
	return errs.New(errs.KindUnsupported, "container %s: %s of Kubernetes pod %s/%s: %s",
		id, p.what(), p.namespace, p.pod, fmt.Sprintf(format, a...)).
		WithHint("route the pod to runc or crun: a RuntimeClass handler whose BinaryName is a nexcage-runc link, or a routing rule such as {\"pod_namespace\": %q, \"container_type\": \"sandbox\", \"runtime\": \"runc\"}", p.namespace)
}

// checkPod refuses, before any side effect, a pod's sandbox the Proxmox
// backend cannot run: one that asks for the host's namespaces or
// privileges (app containers: podcontainer.go). For a sandbox it returns
// the CNI network namespace's path; "" for a bundle that is no pod's.
func checkPod(id string, spec *specs.Spec) (string, error) {
	p := podOf(spec)
	if p == nil {
		return "", nil
	}
	if !p.sandbox {
		return "", errs.New(errs.KindInternal, "container %s: an app container reached the sandbox's checks", id)
	}
	var l specs.Linux
	if spec.Linux != nil {
		l = *spec.Linux
	}
	has := func(t specs.LinuxNamespaceType) (specs.LinuxNamespace, bool) {
		for _, ns := range l.Namespaces {
			if ns.Type == t {
				return ns, true
			}
		}
		return specs.LinuxNamespace{}, false
	}
	for _, h := range []struct {
		t    specs.LinuxNamespaceType
		name string
	}{{specs.NetworkNamespace, "hostNetwork"}, {specs.PIDNamespace, "hostPID"}, {specs.IPCNamespace, "hostIPC"}, {specs.UTSNamespace, "the host's UTS namespace"}} {
		if _, ok := has(h.t); !ok {
			return "", p.refuse(id, "the pod shares the host's %s namespace (%s), which a Proxmox container cannot do", h.t, h.name)
		}
	}
	for _, t := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.MountNamespace} {
		if ns, ok := has(t); ok && ns.Path != "" {
			return "", p.refuse(id, "the sandbox joins an existing %s namespace (%s), which a Proxmox container cannot do", t, ns.Path)
		}
	}
	netns, _ := has(specs.NetworkNamespace)
	if netns.Path == "" {
		return "", p.refuse(id, "the sandbox has no CNI network namespace (no path in linux.namespaces), so the pod has no network for the Proxmox container to take over")
	}
	if spec.Process != nil && spec.Process.Capabilities != nil && slices.Contains(spec.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		return "", p.refuse(id, "a privileged pod (CAP_SYS_ADMIN, as securityContext.privileged gives) asks for the host's devices and kernel, which a Proxmox container does not give")
	}
	if len(l.Devices) > 0 {
		return "", p.refuse(id, "devices (linux.devices) are not given to a pod's Proxmox container")
	}
	if len(l.NetDevices) > 0 {
		return "", p.refuse(id, "linux.netDevices: the pod's network is the CNI interface only")
	}
	return netns.Path, nil
}

// preparePod reads the pod network of a sandbox (no side effect) and
// records where its interface will be (checkpointed by the caller
// before TakePodInterface).
func preparePod(c *state.Container, netnsPath string) (*PodNetwork, error) {
	ifc, err := netsetup.ReadPodInterface(netnsPath, podIfName)
	if err != nil {
		return nil, errs.Wrap(errs.KindUnsupported, err, "container %s: the pod's network cannot be taken over by a Proxmox container", c.ID).
			WithHint("use a CNI network that gives the pod one IPv4 address and a default route (e.g. bridge with host-local), or route the pod to runc or crun (a RuntimeClass handler whose BinaryName is a nexcage-runc link)")
	}
	r := make([]byte, 4)
	_, _ = rand.Read(r)
	link := podLinkPrefix + hex.EncodeToString(r)
	c.Data[DataPodNetns], c.Data[DataPodIfName], c.Data[DataPodLink] = netnsPath, podIfName, link
	return &PodNetwork{Link: link, Interface: ifc}, nil
}

// podNetOf is the pod interface c's supervisor gives back (zero for a
// container that is no pod's sandbox).
func podNetOf(c *state.Container) supervisor.PodNet {
	return supervisor.PodNet{Netns: c.Data[DataPodNetns], IfName: c.Data[DataPodIfName], Link: c.Data[DataPodLink]}
}

// takePodInterface moves the CNI interface out of the pod's namespace
// to the host, where pct start gives it to the CT.
func takePodInterface(c *state.Container) error {
	p := podNetOf(c)
	if err := netsetup.TakePodInterface(p.Netns, p.IfName, p.Link); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot take over the pod's network interface", c.ID)
	}
	return nil
}

// givePodInterfaceBack puts the pod's interface back into its namespace
// if it is still on the host (the supervisor does it when the CT stops;
// this is for a create that failed, or a supervisor that was killed). It
// deletes it when the namespace is gone. A no-op for other containers.
func (b *Backend) givePodInterfaceBack(c *state.Container) error {
	p := podNetOf(c)
	if p.Link == "" || p.Netns == "" || p.IfName == "" {
		return nil
	}
	if err := netsetup.GivePodInterfaceBack(p.Netns, p.IfName, p.Link); err != nil {
		return errs.Wrap(errs.KindBackend, err, "container %s: cannot give the pod's network interface back", c.ID)
	}
	return nil
}

// podNetwork is the network of a pod's sandbox CT: no net0 (the pod's IP
// is the one CNI gave), the CNI interface as an LXC phys interface named
// eth0, and the init helper configuring its address and route.
func (t *translator) podNetwork() error {
	p := t.in.Pod
	if !reIfName.MatchString(p.Link) {
		return invalid("pod network", "%q is not a network interface name", p.Link)
	}
	prefix := fmt.Sprintf("lxc.net.%d.", netDeviceIndexBase)
	t.raw(prefix+"type", "phys")
	t.raw(prefix+"link", p.Link)
	t.raw(prefix+"name", p.Interface.Name)
	t.raw(prefix+"flags", "up")
	if t.in.InitHelperDir == "" {
		return errs.New(errs.KindInternal, "a pod's sandbox needs the init helper to configure its network")
	}
	c := &netsetup.Config{Interfaces: []netsetup.Interface{p.Interface}, Hostname: t.req.Hostname, Timeout: t.in.NetTimeout}
	if c.Timeout == 0 {
		c.Timeout = netsetup.DefaultTimeout
	}
	t.req.Net = c
	return nil
}

// podSandboxSpec is the sandbox's spec as the CT gets it, a shallow copy
// with other mounts where containerd's cannot be mounted by an
// unprivileged CT, whose setup runs as its mapped root and cannot
// traverse containerd's directories (0700):
//   - /dev/shm is a tmpfs of the CT's own instead of the bind of the
//     pod's shm (.../sandboxes/<id>/shm): the pod's members share the
//     CT's IPC namespace and so its /dev/shm, which is what it is for;
//   - a file bound from the host (containerd's hostname, hosts and
//     resolv.conf of the pod) is bound from a copy in the helper
//     directory (pod/<n>-<name>), which only the CT's root can reach.
func podSandboxSpec(id string, spec *specs.Spec, helperDir string) (*specs.Spec, error) {
	s := *spec
	s.Mounts = make([]specs.Mount, len(spec.Mounts))
	copy(s.Mounts, spec.Mounts)
	for i, m := range s.Mounts {
		bind := m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
		if !bind {
			continue
		}
		if path.Clean(m.Destination) == "/dev/shm" {
			opts := []string{"nosuid", "noexec", "nodev", "mode=1777"}
			if size := shmSize(m.Source); size != "" {
				opts = append(opts, "size="+size)
			}
			s.Mounts[i] = specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: opts}
			continue
		}
		fi, err := os.Stat(m.Source)
		if err != nil || !fi.Mode().IsRegular() || helperDir == "" {
			continue // the translation checks and refuses it by name
		}
		dir := filepath.Join(helperDir, "pod")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, errs.Wrap(errs.KindBackend, err, "container %s: cannot create %s", id, dir)
		}
		dst := filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(m.Source)))
		if err := copyFile(m.Source, dst, 0o644); err != nil {
			return nil, errs.Wrap(errs.KindBackend, err, "container %s: cannot copy the pod's %s for the Proxmox container", id, m.Destination)
		}
		s.Mounts[i].Source = dst
	}
	return &s, nil
}

// shmSize is the size of the tmpfs mounted at p ("" when unknown), so the
// CT's /dev/shm is as large as the one containerd made for the pod.
func shmSize(p string) string {
	var st unix.Statfs_t
	if unix.Statfs(p, &st) != nil || st.Type != unix.TMPFS_MAGIC || st.Blocks == 0 {
		return ""
	}
	return strconv.FormatUint(st.Blocks*uint64(st.Bsize)/1024, 10) + "k"
}
