package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// withTemplatesConfig sets the templates section of e's nexcage config.
func withTemplatesConfig(t *testing.T, e *pveEnv, templates map[string]any) {
	t.Helper()
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["templates"] = templates
	if data, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pveshCalls are the argv of the pvesh calls in PVESIM_LOG.
func (e *pveEnv) pveshCalls() [][]string {
	e.t.Helper()
	f, err := os.Open(e.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Tool string   `json:"tool"`
			Argv []string `json:"argv"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err == nil && l.Tool == "pvesh" {
			out = append(out, l.Argv)
		}
	}
	return out
}

// TestTemplateRegistryPullThroughProxmox: without skopeo on this host
// (turned off with templates.skopeo_path "", or a path that does not
// exist) a registry image is pulled through Proxmox VE 9.1's
// oci-registry-pull. pvesim has no network and refuses such pulls; nexcage
// reports that as a template error naming both ways out, and nothing is
// left on the node.
func TestTemplateRegistryPullThroughProxmox(t *testing.T) {
	for _, tc := range []struct {
		name, skopeo, why string
	}{
		{"skopeo off", "", `skopeo is not used on this host (templates.skopeo_path is "")`},
		{"skopeo missing", "/nonexistent/skopeo", "skopeo is not installed (/nonexistent/skopeo: not found)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newPveEnv(t, false, "")
			withTemplatesConfig(t, e, map[string]any{"skopeo_path": tc.skopeo})
			var r Result
			calls := e.countCalls(func() {
				r = e.n.Fails(7, "cannot pull docker.io/library/alpine:3.20", "create", "--name", "reg-pve", "--image", "docker.io/library/alpine:3.20")
			})
			for _, want := range []string{
				tc.why,
				"Proxmox's oci-registry-pull failed",
				"pvesim: registry pulls are not available in the simulator",
				"apt-get install skopeo",
				"Proxmox VE 9.1 or later",
			} {
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("stderr does not mention %q:\n%s", want, r.Stderr)
				}
			}
			wantCalls(t, "failed pull", calls, nil)
			pvesh := e.pveshCalls()
			if len(pvesh) != 1 || !slices.Equal(pvesh[0][:4], []string{"create", "/nodes/pve/storage/local/oci-registry-pull", "--reference", "docker.io/library/alpine:3.20"}) ||
				pvesh[0][4] != "--filename" || !strings.HasPrefix(pvesh[0][5], ".nexcage-partial-pull-") {
				t.Errorf("pvesh calls %q", pvesh)
			}
			// A tagless reference is sent with :latest (the API needs a tag).
			e.n.Fails(7, "oci-registry-pull", "create", "--name", "reg-pve", "--image", "docker://alpine")
			if pvesh := e.pveshCalls(); len(pvesh) != 2 || pvesh[1][3] != "alpine:latest" {
				t.Errorf("pvesh calls %q", pvesh)
			}
			if ents, _ := os.ReadDir(e.cacheDir()); len(ents) > 0 {
				var names []string
				for _, en := range ents {
					names = append(names, en.Name())
				}
				t.Errorf("left in the template cache: %v", names)
			}
			e.assertNothingLeft("after the refused pulls")
		})
	}
}
