package pvesim

import (
	"fmt"
	"strings"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// nodePackages is what `pveversion -v` of each simulated version
// reports. The pve-container and lxc-pve versions follow
// proxmox-pct.md §9.1 and decide behaviour (pve-container 5.3.5 is
// stable-bookworm's last, 6.0.13 a 9.0 node before the OCI features,
// 6.1.10 an up-to-date 9.1 node); the other packages only make the
// output look like a real node's and are representative, not exact.
type nodePackages struct {
	manager, managerHash, proxmoxVE, kernel string
	// pkgs are the other packages, printed sorted by name.
	pkgs map[string]string
}

var packagesOf = map[pvecfg.Version]nodePackages{
	pvecfg.V8_4: {
		manager: "8.4.17", managerHash: "c8cd0d9a6d6b6ee4", proxmoxVE: "8.4.0", kernel: "6.8.12-20-pve",
		pkgs: map[string]string{
			"corosync":                 "3.1.9-pve1",
			"libpve-common-perl":       "8.3.4",
			"libpve-guest-common-perl": "5.2.2",
			"libpve-storage-perl":      "8.3.7",
			"lxc-pve":                  "6.0.0-1",
			"lxcfs":                    "6.0.0-pve2",
			"pve-cluster":              "8.1.2",
			"pve-container":            "5.3.5",
			"pve-firewall":             "5.1.2",
			"pve-ha-manager":           "4.0.7",
			"qemu-server":              "8.4.5",
		},
	},
	pvecfg.V9_0: {
		manager: "9.0.11", managerHash: "3bf5476b8a4699e2", proxmoxVE: "9.0.0", kernel: "6.14.11-4-pve",
		pkgs: map[string]string{
			"corosync":                 "3.1.9-pve2",
			"libpve-common-perl":       "9.0.11",
			"libpve-guest-common-perl": "6.0.2",
			"libpve-storage-perl":      "9.0.13",
			"lxc-pve":                  "6.0.4-2",
			"lxcfs":                    "6.0.4-pve1",
			"pve-cluster":              "9.0.6",
			"pve-container":            "6.0.13",
			"pve-firewall":             "6.0.3",
			"pve-ha-manager":           "5.0.5",
			"qemu-server":              "9.0.23",
		},
	},
	pvecfg.V9_1: {
		manager: "9.1.9", managerHash: "0d4b9c3c8f2e5a17", proxmoxVE: "9.1.0", kernel: "6.17.13-2-pve",
		pkgs: map[string]string{
			"corosync":                 "3.1.9-pve2",
			"libpve-common-perl":       "9.1.4",
			"libpve-guest-common-perl": "6.0.2",
			"libpve-storage-perl":      "9.1.1",
			"lxc-pve":                  "6.0.5-4",
			"lxcfs":                    "6.0.4-pve1",
			"pve-cluster":              "9.0.7",
			"pve-container":            "6.1.10",
			"pve-firewall":             "6.0.4",
			"pve-ha-manager":           "5.1.0",
			"qemu-server":              "9.1.4",
		},
	},
}

const pveversionUsage = "USAGE: pveversion [--verbose]\n"

// Pveversion is pve-manager's `pveversion [--verbose]`: the one-line
// `pve-manager/<version>/<hash> (running kernel: <kernel>)`, or with -v one
// `<package>: <version>` line per important package, proxmox-ve and
// pve-manager first (as PVE::API2::APT's versions orders them).
func (n *Node) Pveversion(args []string) int {
	verbose := false
	for _, a := range args {
		name := strings.TrimLeft(a, "-")
		switch {
		case a == name || name == "": // not an option ("x", "-"): Getopt leaves it in @ARGV
			fmt.Fprint(n.Stderr, pveversionUsage)
			return exitFailure
		case name != "" && strings.HasPrefix("verbose", name):
			verbose = true
		default:
			fmt.Fprintf(n.Stderr, "Unknown option: %s\n%s", name, pveversionUsage)
			return exitFailure
		}
	}
	p := packagesOf[n.PVEVersion()]
	running := p.manager + "/" + p.managerHash
	if !verbose {
		fmt.Fprintf(n.Stdout, "pve-manager/%s (running kernel: %s)\n", running, p.kernel)
		return 0
	}
	var b strings.Builder
	fmt.Fprintf(&b, "proxmox-ve: %s (running kernel: %s)\n", p.proxmoxVE, p.kernel)
	fmt.Fprintf(&b, "pve-manager: %s (running version: %s)\n", p.manager, running)
	kpkg := "proxmox-kernel-" + p.kernel + "-signed"
	kver := strings.TrimSuffix(p.kernel, "-pve")
	fmt.Fprintf(&b, "%s: %s\n", kpkg, kver)
	for _, k := range sortedKeysOf(p.pkgs) {
		fmt.Fprintf(&b, "%s: %s\n", k, p.pkgs[k])
	}
	fmt.Fprint(n.Stdout, b.String())
	return 0
}
