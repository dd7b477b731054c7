package proxmox

import (
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/netsetup"
	"github.com/nexcage/nexcage/internal/pve"
)

var (
	pve84 = pve.NodeVersion{Manager: "8.4.1", Container: "5.3.3"}
	pve91 = pve.NodeVersion{Manager: "9.1.1", Container: "6.0.18"}
)

func netHelperInput(t *testing.T) Input {
	in := baseInput(t)
	in.InitHelperDir = "/var/lib/lxc/.nexcage/test-oci-0123"
	in.OSType = "unmanaged"
	return in
}

func TestTranslateNetwork(t *testing.T) {
	type want struct {
		net0, nameserver string
		net              *netsetup.Config // nil: the helper configures nothing
		raw              string           // a raw line that must be there
		warn             string
	}
	eth0 := func(mode, addr, gw string) []netsetup.Interface {
		return []netsetup.Interface{{Name: "eth0", Bridge: "vmbr0", Mode: mode, Address: addr, Gateway: gw}}
	}
	cases := []struct {
		name string
		edit func(*Input)
		want want
	}{
		{"helper, 8.4: dhcp by the helper", func(in *Input) { in.Node = pve84 }, want{
			net0: "name=eth0,bridge=vmbr0,ip=dhcp",
			net:  &netsetup.Config{Interfaces: eth0("dhcp", "", ""), ResolvPath: "/etc/resolv.conf", Hostname: "test-oci", Timeout: netsetup.DefaultTimeout},
		}},
		{"helper, unknown node: as the oldest", func(in *Input) {}, want{
			net0: "name=eth0,bridge=vmbr0,ip=dhcp",
			net:  &netsetup.Config{Interfaces: eth0("dhcp", "", ""), ResolvPath: "/etc/resolv.conf", Hostname: "test-oci", Timeout: netsetup.DefaultTimeout},
		}},
		{"helper, 8.4: static from annotations, dns from config", func(in *Input) {
			in.Node = pve84
			in.Nameservers = []string{"192.0.2.53"}
			in.NetTimeout = 5 * time.Second
			in.Spec.Annotations = map[string]string{AnnotationIP: "10.0.0.5/24", AnnotationGateway: "10.0.0.1"}
		}, want{
			net0: "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1", nameserver: "192.0.2.53",
			net: &netsetup.Config{Interfaces: eth0("static", "10.0.0.5/24", "10.0.0.1"), Nameservers: []string{"192.0.2.53"},
				ResolvPath: "/etc/resolv.conf", Hostname: "test-oci", Timeout: 5 * time.Second},
		}},
		{"helper, 9.1: host-managed, the helper waits for the node", func(in *Input) {
			in.Node = pve91
			in.Spec.Annotations = map[string]string{AnnotationNameservers: "192.0.2.1, 2001:db8::1 192.0.2.2"}
		}, want{
			net0: "name=eth0,bridge=vmbr0,host-managed=1,ip=dhcp", nameserver: "192.0.2.1 2001:db8::1 192.0.2.2",
			net: &netsetup.Config{Interfaces: eth0("node", "", ""), Nameservers: []string{"192.0.2.1", "2001:db8::1", "192.0.2.2"},
				ResolvPath: "/etc/resolv.conf", Hostname: "test-oci", Timeout: netsetup.DefaultTimeout},
		}},
		{"helper, 9.1 static", func(in *Input) {
			in.Node = pve91
			in.Spec.Annotations = map[string]string{AnnotationIP: "10.0.0.5/24"}
		}, want{
			net0: "name=eth0,bridge=vmbr0,host-managed=1,ip=10.0.0.5/24",
			net:  &netsetup.Config{Interfaces: eth0("node", "", ""), ResolvPath: "/etc/resolv.conf", Hostname: "test-oci", Timeout: netsetup.DefaultTimeout},
		}},
		{"annotation dhcp explicitly", func(in *Input) { in.Spec.Annotations = map[string]string{AnnotationIP: "dhcp"} }, want{
			net0: "name=eth0,bridge=vmbr0,ip=dhcp",
			net:  &netsetup.Config{Interfaces: eth0("dhcp", "", ""), ResolvPath: "/etc/resolv.conf", Hostname: "test-oci", Timeout: netsetup.DefaultTimeout},
		}},
		{"the bundle mounts its own resolv.conf", func(in *Input) {
			in.Nameservers = []string{"192.0.2.53"}
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: "file", Options: []string{"rbind", "ro"}})
		}, want{
			net0: "name=eth0,bridge=vmbr0,ip=dhcp", nameserver: "192.0.2.53",
			net: &netsetup.Config{Interfaces: eth0("dhcp", "", ""), Nameservers: []string{"192.0.2.53"}, Hostname: "test-oci", Timeout: netsetup.DefaultTimeout},
		}},
		{"the bundle mounts /etc", func(in *Input) {
			in.Spec.Mounts = append(in.Spec.Mounts, specs.Mount{Destination: "/etc/", Type: "bind", Source: "data", Options: []string{"rbind"}})
		}, want{
			net0: "name=eth0,bridge=vmbr0,ip=dhcp",
			net:  &netsetup.Config{Interfaces: eth0("dhcp", "", ""), Hostname: "test-oci", Timeout: netsetup.DefaultTimeout},
		}},
		{"read-only root: a bound file from the helper directory", func(in *Input) {
			in.Spec.Root.Readonly = true
			in.Nameservers = []string{"192.0.2.53"}
		}, want{
			net0: "name=eth0,bridge=vmbr0,ip=dhcp", nameserver: "192.0.2.53",
			net: &netsetup.Config{Interfaces: eth0("dhcp", "", ""), Nameservers: []string{"192.0.2.53"}, Hostname: "test-oci", Timeout: netsetup.DefaultTimeout},
			raw: "lxc.mount.entry: /var/lib/lxc/.nexcage/test-oci-0123/resolv.conf etc/resolv.conf none bind,ro,create=file 0 0",
		}},
		{"read-only root without nameservers", func(in *Input) { in.Spec.Root.Readonly = true }, want{
			net0: "name=eth0,bridge=vmbr0,ip=dhcp",
			net:  &netsetup.Config{Interfaces: eth0("dhcp", "", ""), Hostname: "test-oci", Timeout: netsetup.DefaultTimeout},
			warn: "root.readonly: /etc/resolv.conf stays the image's own",
		}},
		{"template, managed ostype, 9.1: its own init configures eth0", func(in *Input) {
			in.InitHelperDir, in.OSType, in.Node = "", "debian", pve91
			in.Spec.Process, in.KeepTemplateInit = nil, true
			in.Spec.Annotations = map[string]string{AnnotationIP: "10.0.0.5/24", AnnotationGateway: "10.0.0.1"}
		}, want{net0: "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1"}},
		{"no helper, unmanaged, 9.1: host-managed", func(in *Input) {
			in.InitHelperDir, in.Node, in.Spec.Process, in.KeepTemplateInit = "", pve91, nil, true
		}, want{
			net0: "name=eth0,bridge=vmbr0,host-managed=1,ip=dhcp",
		}},
		{"no helper, unmanaged, 8.4: nothing configures it", func(in *Input) {
			in.InitHelperDir, in.Node, in.Spec.Process, in.KeepTemplateInit = "", pve84, nil, true
		}, want{
			net0: "name=eth0,bridge=vmbr0,ip=dhcp", warn: "eth0 and lo stay down",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := netHelperInput(t)
			c.edit(&in)
			r, err := Translate(in)
			if err != nil {
				t.Fatal(err)
			}
			o := optMap(r)
			if o["net0"] != c.want.net0 {
				t.Errorf("net0 = %q, want %q", o["net0"], c.want.net0)
			}
			if o["nameserver"] != c.want.nameserver {
				t.Errorf("nameserver = %q, want %q", o["nameserver"], c.want.nameserver)
			}
			if (r.Net == nil) != (c.want.net == nil) {
				t.Fatalf("net = %+v, want %+v", r.Net, c.want.net)
			}
			if r.Net != nil && !sameNet(*r.Net, *c.want.net) {
				t.Errorf("net = %+v, want %+v", *r.Net, *c.want.net)
			}
			if c.want.raw != "" && !strings.Contains(strings.Join(rawLines(r), "\n"), c.want.raw) {
				t.Errorf("raw lines %q lack %q", rawLines(r), c.want.raw)
			}
			if (r.ResolvConf != nil) != (c.want.raw != "") {
				t.Errorf("resolv.conf for the helper directory: %q", r.ResolvConf)
			}
			if c.want.raw != "" && string(r.ResolvConf) != "# generated by nexcage\nnameserver 192.0.2.53\n" {
				t.Errorf("resolv.conf content %q", r.ResolvConf)
			}
			if c.want.warn != "" && !strings.Contains(strings.Join(r.Warnings, "\n"), c.want.warn) {
				t.Errorf("warnings %q lack %q", r.Warnings, c.want.warn)
			}
		})
	}
}

func sameNet(a, b netsetup.Config) bool {
	if len(a.Interfaces) != len(b.Interfaces) || strings.Join(a.Nameservers, ",") != strings.Join(b.Nameservers, ",") ||
		a.ResolvPath != b.ResolvPath || a.Hostname != b.Hostname || a.Timeout != b.Timeout {
		return false
	}
	for i := range a.Interfaces {
		if a.Interfaces[i] != b.Interfaces[i] {
			return false
		}
	}
	return true
}

func TestTranslateNetworkErrors(t *testing.T) {
	cases := map[string]struct {
		anno map[string]string
		edit func(*Input)
		kind errs.Kind
		msg  string
	}{
		"ip not cidr":        {anno: map[string]string{AnnotationIP: "10.0.0.5"}, kind: errs.KindInvalidBundle, msg: `annotations[org.nexcage.proxmox.ip]: "10.0.0.5" is not an address with a prefix length`},
		"ip network":         {anno: map[string]string{AnnotationIP: "10.0.0.0/24"}, kind: errs.KindInvalidBundle, msg: "annotations[org.nexcage.proxmox.ip]: \"10.0.0.0/24\" is the network address"},
		"ip v6":              {anno: map[string]string{AnnotationIP: "2001:db8::5/64"}, kind: errs.KindInvalidBundle, msg: "annotations[org.nexcage.proxmox.ip]"},
		"ip injection":       {anno: map[string]string{AnnotationIP: "10.0.0.5/24,gw=10.0.0.1"}, kind: errs.KindInvalidBundle, msg: "annotations[org.nexcage.proxmox.ip]"},
		"gw with dhcp":       {anno: map[string]string{AnnotationGateway: "10.0.0.1"}, kind: errs.KindInvalidBundle, msg: "annotations[org.nexcage.proxmox.gw]: a gateway needs a static address"},
		"gw outside":         {anno: map[string]string{AnnotationIP: "10.0.0.5/24", AnnotationGateway: "10.9.0.1"}, kind: errs.KindInvalidBundle, msg: "annotations[org.nexcage.proxmox.gw]: gateway 10.9.0.1 is not in the subnet 10.0.0.0/24"},
		"gw not an address":  {anno: map[string]string{AnnotationIP: "10.0.0.5/24", AnnotationGateway: "router"}, kind: errs.KindInvalidBundle, msg: `annotations[org.nexcage.proxmox.gw]: gateway "router" is not an IPv4 address`},
		"nameservers bad":    {anno: map[string]string{AnnotationNameservers: "192.0.2.1,dns.example"}, kind: errs.KindInvalidBundle, msg: `annotations[org.nexcage.proxmox.nameservers]: "dns.example" is not an IP address`},
		"nameservers empty":  {anno: map[string]string{AnnotationNameservers: " , "}, kind: errs.KindInvalidBundle, msg: "annotations[org.nexcage.proxmox.nameservers]: \" , \" lists no DNS server"},
		"unknown annotation": {anno: map[string]string{AnnotationPrefix + "ip6": "dhcp"}, kind: errs.KindInvalidBundle, msg: "known: storage, rootfs-size, bridge, features, unprivileged, ostype, template, tags, ip, gw, nameservers"},
		"join a netns": {edit: func(in *Input) {
			for i := range in.Spec.Linux.Namespaces {
				if in.Spec.Linux.Namespaces[i].Type == specs.NetworkNamespace {
					in.Spec.Linux.Namespaces[i].Path = "/var/run/netns/other"
				}
			}
		}, kind: errs.KindUnsupported, msg: "linux.namespaces (network): joining an existing network namespace (path /var/run/netns/other) is not possible on Proxmox"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			in := netHelperInput(t)
			in.Spec.Annotations = c.anno
			if c.edit != nil {
				c.edit(&in)
			}
			_, err := Translate(in)
			if err == nil || errs.KindOf(err) != c.kind || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v (kind %v), want kind %v with %q", err, errs.KindOf(err), c.kind, c.msg)
			}
			if !strings.HasPrefix(err.Error(), "container test-oci: ") {
				t.Errorf("the error does not name the container: %v", err)
			}
		})
	}
}
