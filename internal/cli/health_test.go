package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/health"
)

func TestHealthCmdParsing(t *testing.T) {
	inv := &Invocation{}
	c := healthCmd(inv)
	c.SetArgs([]string{"--format", "json", "--id", "cilium-x"})
	c.SetOut(&bytes.Buffer{})
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	if inv.Verb != "health" || inv.Format != "json" || inv.ID != "cilium-x" {
		t.Errorf("invocation %+v", inv)
	}

	inv = &Invocation{}
	c = healthCmd(inv)
	c.SetArgs(nil)
	if err := c.Execute(); err != nil || inv.Format != "text" || inv.ID != health.DefaultSampleID {
		t.Errorf("defaults: %v %+v", err, inv)
	}

	for _, args := range [][]string{{"--format", "yaml"}, {"extra"}} {
		c = healthCmd(&Invocation{})
		c.SetArgs(args)
		c.SetOut(&bytes.Buffer{})
		c.SetErr(&bytes.Buffer{})
		if err := c.Execute(); errs.KindOf(err) != errs.KindUsage {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}

// TestHealthRun runs the verb's body on a host without Proxmox and with
// a broken config.
func TestHealthRun(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(format string) (int, string) {
		var out bytes.Buffer
		a := &App{Stdout: &out, Stderr: &bytes.Buffer{}, inv: &Invocation{Verb: "health", Format: format, ID: "ci-7",
			Globals: Globals{Config: cfg, Root: filepath.Join(dir, "state")}}}
		code, err := a.health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return code, out.String()
	}

	write(`{"proxmox": {"etc_pve": "` + dir + `/no-pve", "pct_path": "/nonexistent/pct"},
		"runtime": {"routing": [{"pattern": "ci-[0-9]+", "runtime": "runc"}]}}`)
	code, out := run("json")
	var r health.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code != health.ExitFail || r.Config != cfg {
		t.Errorf("exit %d config %q", code, r.Config)
	}
	for name, want := range map[string]health.Status{"config": health.Pass, "pct": health.Fail, "etc-pve": health.Fail, "state-root": health.Pass} {
		if c, _ := r.Find(name); c.Status != want {
			t.Errorf("%s: %s %q, want %s", name, c.Status, c.Detail, want)
		}
	}
	if c, _ := r.Find("routing"); !strings.Contains(c.Detail, `"ci-7" -> runc`) {
		t.Errorf("routing: %q", c.Detail)
	}

	write(`{"proxmox": {"timeout": "soon"}}`)
	code, out = run("text")
	if code != health.ExitFail || !strings.Contains(out, "FAIL  config") || !strings.Contains(out, "proxmox.timeout") {
		t.Errorf("broken config: exit %d\n%s", code, out)
	}
}
