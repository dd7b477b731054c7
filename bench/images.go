package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nexcage/nexcage/internal/state"
)

// stockTemplate is a template `pvesim init --with-templates` puts in the
// cache, as `pveam download` would on Proxmox.
const stockTemplate = "debian-12-standard_12.7-1_amd64.tar.zst"

// imageForm is one way of giving create its root filesystem.
type imageForm struct {
	label string
	args  func(rep int) ([]string, error)
	walls []time.Duration
	write []int64 // write_bytes of the command tree
	disk  []int64 // growth of the files under the node, cache and root
	rss   []int64
}

func (b *Bench) packedTemplates() []string {
	ents, _ := os.ReadDir(filepath.Join(b.pve.root, "var/lib/vz/template/cache"))
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "nexcage-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// ostemplateOf reads the volume id nexcage gave pct create for id.
func (b *Bench) ostemplateOf(id string) (string, error) {
	data, err := os.ReadFile(filepath.Join(b.pve.nroot, id, state.StateFile))
	if err != nil {
		return "", err
	}
	var c state.Container
	if err := json.Unmarshal(data, &c); err != nil {
		return "", err
	}
	v := c.Data["ostemplate"]
	if v == "" {
		return "", fmt.Errorf("state of %s has no ostemplate", id)
	}
	return v, nil
}

// images is section 6.
func (b *Bench) images(sec *Section) error {
	bundle := filepath.Join(b.dir, "bundle-big")
	if err := busyboxBundle(bundle, []string{"sleep", "100000"}); err != nil {
		return err
	}
	if err := fillRootfs(filepath.Join(bundle, "rootfs"), b.c.imageBytes-treeSize(filepath.Join(bundle, "rootfs"))); err != nil {
		return err
	}
	rootfsSize := treeSize(filepath.Join(bundle, "rootfs"))
	stockSize := treeSize(filepath.Join(b.pve.root, "var/lib/vz/template/cache", stockTemplate))
	id := func(form string, rep int) string { return "img-" + form + "-" + strconv.Itoa(rep) }
	forms := []*imageForm{
		{label: fmt.Sprintf("bundle rootfs (%s), first create: packs a template", bytesStr(rootfsSize)),
			args: func(rep int) ([]string, error) { return []string{"create", "--bundle", bundle, id("a", rep)}, nil }},
		{label: "same bundle rootfs, second create: cache hit",
			args: func(rep int) ([]string, error) { return []string{"create", "--bundle", bundle, id("b", rep)}, nil }},
		{label: fmt.Sprintf("existing template `local:vztmpl/%s` (%s compressed)", stockTemplate, bytesStr(stockSize)),
			args: func(rep int) ([]string, error) {
				return []string{"create", "--image", "local:vztmpl/" + stockTemplate, id("c", rep)}, nil
			}},
		{label: "existing template holding the same rootfs (the packed one, by volume id)",
			args: func(rep int) ([]string, error) {
				v, err := b.ostemplateOf(id("a", rep))
				return []string{"create", "--image", v, id("d", rep)}, err
			}},
	}
	var packedSize int64
	// Every create runs under busybox time (for its peak RSS): it adds
	// about a millisecond to runs of a hundred and more.
	b.r.rss = true
	defer func() { b.r.rss = false }()
	for rep := 0; rep < b.c.imageReps; rep++ {
		if p := b.packedTemplates(); len(p) > 0 {
			return fmt.Errorf("packed templates left before round %d (the first create would be a cache hit): %v", rep, p)
		}
		var ids []string
		cleanup := func() {
			for i := len(ids) - 1; i >= 0; i-- {
				_, _ = b.nexcage(b.pve.env(0), "delete", "--force", ids[i])
			}
		}
		for i, f := range forms {
			args, err := f.args(rep)
			if err != nil {
				cleanup()
				return err
			}
			roots := []string{b.pve.root, filepath.Join(b.dir, "images"), b.pve.nroot}
			before := treeSize(roots...)
			s, err := b.nexcage(b.pve.env(0), args...)
			if err != nil {
				cleanup()
				return err
			}
			ids = append(ids, args[len(args)-1])
			f.walls = append(f.walls, s.Wall)
			f.write = append(f.write, s.WriteBytes)
			f.disk = append(f.disk, treeSize(roots...)-before)
			f.rss = append(f.rss, s.MaxRSSKB)
			b.addRSS("create, "+[]string{"bundle packing", "bundle cache hit", "stock template", "packed template"}[i]+" (proxmox-lxc)", s)
			if i == 0 {
				if p := b.packedTemplates(); len(p) == 1 {
					packedSize = treeSize(filepath.Join(b.pve.root, "var/lib/vz/template/cache", p[0]))
				}
			}
		}
		cleanup()
	}
	t := &Table{Header: []string{"create from", "wall (median [min-max])", "bytes written (write_bytes)", "disk growth (files)", "peak RSS"}}
	for _, f := range forms {
		st := summarize(f.walls)
		t.add(f.label, fmt.Sprintf("%s [%s-%s]", ms(st.Median), ms(st.Min), ms(st.Max)),
			bytesStr(medianInt(f.write)), bytesStr(medianInt(f.disk)), kb(medianInt(f.rss)))
	}
	sec.Tables = append(sec.Tables, t)
	sec.Intro = fmt.Sprintf("`nexcage create` on the Proxmox backend (pvesim), %d round(s); each round starts with an empty template cache "+
		"and deletes its containers at the end. The bundle rootfs is busybox plus generated files (half random, half repeated text), "+
		"%s in all. Bytes written is `ru_oublock` x 512 of nexcage and the pct it ran (pvesim extracts the template into the container volume); "+
		"disk growth is the change in the size of the files under the simulated node, the image cache and nexcage's root. "+
		"These creates run under `busybox time` for their peak RSS (about 1 ms added to each).",
		b.c.imageReps, bytesStr(rootfsSize))
	if packedSize > 0 {
		sec.Notes = append(sec.Notes, fmt.Sprintf("The packed template (tar.zst) of the bundle rootfs is %s (%.0f%% of the rootfs).",
			bytesStr(packedSize), 100*float64(packedSize)/float64(rootfsSize)))
	}
	sec.Notes = append(sec.Notes,
		"A cache hit still reads the whole rootfs once to hash its tar stream (the cache key is its content), but writes no new template.",
		"Every form ends in one `pct create`, which extracts the template into a new volume: that extraction is most of the bytes written.")
	return nil
}
