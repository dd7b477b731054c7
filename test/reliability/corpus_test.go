package reliability

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/testutil"
)

// corpusCase is one file of testdata/corpus: a bad input, the command
// that receives it, and what nexcage must answer. See
// testdata/corpus/README.md for the format.
type corpusCase struct {
	Doc      string          `json:"doc"`
	Backends []string        `json:"backends"` // "runc" and/or "proxmox"; default runc
	Args     []string        `json:"args"`     // after the global flags; {bundle}, {long:N} expand
	Bundle   *bundleSetup    `json:"bundle"`
	Config   json.RawMessage `json:"config"`     // JSON merge patch over the backend's config
	RawConf  *string         `json:"config_raw"` // the whole config file, as is
	expectation
	Expect map[string]expectation `json:"expect"` // per-backend override
}

type expectation struct {
	Exit   int      `json:"exit"`
	Stderr []string `json:"stderr"` // substrings (case-insensitive), e.g. the field name
}

// bundleSetup describes the bundle that {bundle} names.
type bundleSetup struct {
	// Setup breaks the bundle's shape: "missing" (no such path), "file"
	// (a file, not a directory), "no-config", "config-dir", "huge-config",
	// "no-rootfs", "rootfs-file"; "" keeps a normal busybox bundle.
	Setup   string            `json:"setup"`
	RawSpec *string           `json:"config_raw"` // config.json content as is
	Spec    json.RawMessage   `json:"spec"`       // JSON merge patch over bundle.DefaultSpec()
	Files   map[string]string `json:"files"`      // extra files, relative to the bundle
}

func loadCorpus(t *testing.T) map[string]corpusCase {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corpusCase{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var c corpusCase
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if c.Doc == "" || len(c.Args) == 0 {
			t.Fatalf("%s: doc and args are required", p)
		}
		if len(c.Backends) == 0 {
			c.Backends = []string{"runc"}
		}
		out[strings.TrimSuffix(filepath.Base(p), ".json")] = c
	}
	return out
}

// TestBadInputCorpus runs every case of testdata/corpus through the built
// nexcage binary and checks its exit code, that stderr names the field,
// that stdout stays empty, and that nothing is left behind: no file under
// --root (state, lock files) and, on the Proxmox backend, no new file on
// the simulated node (<vmid>.conf, packed template, lock file, volume)
// and no VMID in .vmlist.
func TestBadInputCorpus(t *testing.T) {
	cases := loadCorpus(t)
	instances := 0
	for _, c := range cases {
		instances += len(c.Backends)
	}
	if len(cases) < 40 {
		t.Fatalf("corpus has %d cases, want at least 40", len(cases))
	}
	t.Logf("%d corpus cases, %d runs", len(cases), instances)
	bin := testutil.NexcageBin(t)
	// One node serves every Proxmox run; each run checks it is left clean.
	var node *simNode
	for _, c := range cases {
		for _, b := range c.Backends {
			if b == "proxmox" && node == nil {
				node = newSimNode(t)
			}
		}
	}
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c := cases[name]
		for _, backend := range c.Backends {
			t.Run(name+"/"+backend, func(t *testing.T) {
				switch backend {
				case "runc":
					base := map[string]any{"container_config": map[string]any{"default_container_type": "runc"}}
					runCase(t, bin, c, backend, base, nil, nil)
				case "proxmox":
					runCase(t, bin, c, backend, node.proxmoxConfig(), node.env, node)
				default:
					t.Fatalf("unknown backend %q", backend)
				}
			})
		}
	}
}

func runCase(t *testing.T, bin string, c corpusCase, backend string, base map[string]any, env []string, node *simNode) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	cfg := filepath.Join(dir, "nexcage.json")
	switch {
	case c.RawConf != nil:
		writeFile(t, cfg, *c.RawConf)
	default:
		doc := any(base)
		if len(c.Config) > 0 {
			var patch any
			if err := json.Unmarshal(c.Config, &patch); err != nil {
				t.Fatalf("config patch: %v", err)
			}
			doc = mergePatch(doc, patch)
		}
		data, _ := json.MarshalIndent(doc, "", "  ")
		writeFile(t, cfg, string(data))
	}
	bundleDir := filepath.Join(dir, "bundle")
	if c.Bundle != nil {
		makeBundle(t, bundleDir, c.Bundle)
	}
	args := []string{"--root", root, "--config", cfg}
	for _, a := range c.Args {
		args = append(args, expand(a, bundleDir))
	}

	var before []string
	if node != nil {
		before = files(t, node.root)
	}
	res := testutil.Run(t, bin, env, args...)

	want := c.expectation
	if e, ok := c.Expect[backend]; ok {
		want = e
	}
	if res.Code != want.Exit {
		t.Errorf("%s: exit %d, want %d\n%s", c.Doc, res.Code, want.Exit, res)
	}
	for _, s := range want.Stderr {
		if !contains(res.Stderr, s) {
			t.Errorf("%s: stderr does not name %q: %q", c.Doc, s, res.Stderr)
		}
	}
	if res.Stdout != "" {
		t.Errorf("%s: a failing command wrote to stdout: %q", c.Doc, res.Stdout)
	}
	if contains(res.Stderr, "panic:") || contains(res.Stderr, "goroutine ") {
		t.Errorf("%s: nexcage panicked: %s", c.Doc, res.Stderr)
	}
	if left := files(t, root); len(left) > 0 {
		t.Errorf("%s: left under --root: %q", c.Doc, left)
	}
	if node != nil {
		left := added(before, files(t, node.root))
		if len(left) > 0 {
			t.Errorf("%s: left on the Proxmox node: %q", c.Doc, left)
		}
		if ids := node.vmids(t); len(ids) > 0 {
			t.Errorf("%s: VMIDs left in .vmlist: %v", c.Doc, ids)
		}
	}
}

// expand replaces {bundle} and {long:N} (N 'a's) in a corpus argument.
func expand(a, bundleDir string) string {
	a = strings.ReplaceAll(a, "{bundle}", bundleDir)
	for {
		i := strings.Index(a, "{long:")
		if i < 0 {
			return a
		}
		j := strings.Index(a[i:], "}")
		n, err := strconv.Atoi(a[i+len("{long:") : i+j])
		if err != nil {
			return a
		}
		a = a[:i] + strings.Repeat("a", n) + a[i+j+1:]
	}
}

// makeBundle builds the case's bundle at dir: a busybox rootfs and a
// config.json from bundle.DefaultSpec() (patched), then breaks it as
// Setup says.
func makeBundle(t *testing.T, dir string, b *bundleSetup) {
	t.Helper()
	switch b.Setup {
	case "missing":
		return
	case "file":
		writeFile(t, dir, "not a bundle\n")
		return
	}
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.BusyboxRootfs(t, filepath.Join(dir, "rootfs"))
	var spec any
	raw, _ := json.Marshal(bundle.DefaultSpec())
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	if len(b.Spec) > 0 {
		var patch any
		if err := json.Unmarshal(b.Spec, &patch); err != nil {
			t.Fatalf("spec patch: %v", err)
		}
		spec = mergePatch(spec, patch)
	}
	data, _ := json.MarshalIndent(spec, "", "  ")
	if b.RawSpec != nil {
		data = []byte(*b.RawSpec)
	}
	cfg := filepath.Join(dir, bundle.ConfigFile)
	writeFile(t, cfg, string(data))
	for name, body := range b.Files {
		writeFile(t, filepath.Join(dir, name), body)
	}
	switch b.Setup {
	case "":
	case "no-config":
		must(t, os.Remove(cfg))
	case "config-dir":
		must(t, os.Remove(cfg))
		must(t, os.Mkdir(cfg, 0o755))
	case "huge-config":
		// Valid JSON, one byte over the 16 MiB limit.
		pad := bundle.MaxConfigSize + 1 - len(data) - len(`{"x":""}`) + 2
		huge := `{"x":"` + strings.Repeat("a", pad) + `",` + string(data[1:])
		writeFile(t, cfg, huge)
	case "no-rootfs":
		must(t, os.RemoveAll(filepath.Join(dir, "rootfs")))
	case "rootfs-file":
		must(t, os.RemoveAll(filepath.Join(dir, "rootfs")))
		writeFile(t, filepath.Join(dir, "rootfs"), "not a directory\n")
	default:
		t.Fatalf("unknown bundle setup %q", b.Setup)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mergePatch applies an RFC 7386 JSON merge patch: objects merge key by
// key, null deletes, anything else replaces.
func mergePatch(doc, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(d, k)
			continue
		}
		d[k] = mergePatch(d[k], v)
	}
	return d
}
