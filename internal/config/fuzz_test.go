package config

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

// FuzzParse feeds arbitrary bytes to the config parser and routes an
// arbitrary id with the result. A file is either refused with an
// invalid-config error naming the file, or it yields a config that
// validates, builds a router, and survives a marshal/parse round trip
// unchanged. Nothing may panic.
func FuzzParse(f *testing.F) {
	if ex, err := os.ReadFile("../../config.example.json"); err == nil {
		f.Add(ex, "cilium-x")
	}
	for _, s := range []string{
		`{}`, `null`, `[]`, `""`, `{"proxmox":{"timeout":"x"}}`,
		`{"runtime":{"routing":[{"pattern":"(","runtime":"crun"}]}}`,
		`{"runtime":{"routing":[{"pattern":".*","runtime":"vm"}]}}`,
		`{"runtime":{"routing":[{"pattern":"^a$","runtime":"runc"}]},"container_config":{"crun_name_patterns":["[","b*"]}}`,
		`{"proxmox":{"vmid_range":[200,100]}}`, `{"proxmox":{"vmid_range":[1,2,3]}}`,
		`{"network":{"bridge":"vmbr0\nlxc.hook.pre-start: /x"}}`,
		`{"proxmox":{"node":"a\u0000b"}}`, `{"unknown":1,"proxmox":{"bogus":true}}`,
		`{"proxmox":{"unprivileged":null}}`, `{"proxmox":{"timeout":1e400}}`,
		`{"proxmox":` + strings.Repeat("[", 100), "\xff\xfe{}",
	} {
		f.Add([]byte(s), "c1")
	}
	const path = "/fuzz/config.json"
	f.Fuzz(func(t *testing.T, data []byte, id string) {
		c, _, err := parse(path, data)
		if err != nil {
			if k := errs.KindOf(err); k != errs.KindInvalidConfig {
				t.Fatalf("parse error kind %v, want invalid-config: %v", k, err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("parse error does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		r, err := c.Router()
		if err != nil {
			t.Fatalf("parsed config has no router: %v", err)
		}
		if d, err := r.Route(id, ""); err == nil && d.Backend == "" {
			t.Fatalf("Route(%q) chose no backend", id)
		} else if err != nil {
			if k := errs.KindOf(err); k != errs.KindUnsupported && k != errs.KindUsage {
				t.Fatalf("Route(%q) error kind %v: %v", id, k, err)
			}
		}

		again, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal parsed config: %v", err)
		}
		c2, _, err := parse(path, again)
		if err != nil {
			t.Fatalf("re-parse of marshalled config failed: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}
