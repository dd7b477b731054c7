package pvesim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// versionEnv names the environment variable that selects the Proxmox VE
// version a node simulates.
const versionEnv = "PVESIM_PVE_VERSION"

// PVEVersion is the Proxmox VE release this node behaves as (resolved by
// Main from the node's version file and PVESIM_PVE_VERSION; a Node built
// without one is pvecfg.DefaultVersion).
func (n *Node) PVEVersion() pvecfg.Version { return n.Version.Or(pvecfg.DefaultVersion) }

// VersionFile is where `pvesim init` records the node's version:
// <root>/var/lib/pvesim/nodes/<node>/pve-version, one line "9.1". It is
// per node (two nodes of one root may differ, as in a cluster being
// upgraded) and outside the simulated /etc/pve, which real nodes share.
func (n *Node) VersionFile() string {
	return filepath.Join(n.Root, "var/lib/pvesim/nodes", n.Name, "pve-version")
}

// recordedVersion reads the node's version file; VersionUnset when the
// node has none (a root initialised before versions existed).
func (n *Node) recordedVersion() (pvecfg.Version, error) {
	data, err := os.ReadFile(n.VersionFile())
	if errors.Is(err, fs.ErrNotExist) {
		return pvecfg.VersionUnset, nil
	}
	if err != nil {
		return pvecfg.VersionUnset, err
	}
	v, err := pvecfg.ParseVersion(strings.TrimSpace(string(data)))
	if err != nil {
		return pvecfg.VersionUnset, fmt.Errorf("%s: %w", n.VersionFile(), err)
	}
	return v, nil
}

// resolveVersion decides the node's version. The recorded version is the
// node's identity; PVESIM_PVE_VERSION (env, may be "") may repeat it but
// never override it: a conflicting pair is an error rather than a guess,
// so a test that believes it talks to 8.4 never silently gets 9.1.
// Without a record, the environment decides, else DefaultVersion.
func (n *Node) resolveVersion(env string) (pvecfg.Version, error) {
	rec, err := n.recordedVersion()
	if err != nil {
		return pvecfg.VersionUnset, err
	}
	var want pvecfg.Version
	if env != "" {
		if want, err = pvecfg.ParseVersion(env); err != nil {
			return pvecfg.VersionUnset, fmt.Errorf("%s: %w", versionEnv, err)
		}
	}
	switch {
	case rec != pvecfg.VersionUnset && want != pvecfg.VersionUnset && rec != want:
		return pvecfg.VersionUnset, fmt.Errorf("%s=%s conflicts with node '%s', which was initialised as Proxmox VE %s (%s); unset %s or initialise a new PVESIM_ROOT",
			versionEnv, want, n.Name, rec, n.VersionFile(), versionEnv)
	case rec != pvecfg.VersionUnset:
		return rec, nil
	case want != pvecfg.VersionUnset:
		return want, nil
	}
	return pvecfg.DefaultVersion, nil
}

// recordVersion writes the node's version file (init).
func (n *Node) recordVersion(v pvecfg.Version) error {
	if err := os.MkdirAll(filepath.Dir(n.VersionFile()), 0o755); err != nil {
		return err
	}
	return renameio.WriteFile(n.VersionFile(), []byte(v.String()+"\n"), 0o644)
}
