package pvesim

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// toolVerb is one command of pveam or pvesh: the CLIHandler view (class for
// the grouping of the usage listing, positional args, options) plus the
// handler. Argument parsing is pct's (parseArgs).
type toolVerb struct {
	class string // Perl class; the usage listing groups by it
	def   *verbDef
	run   func(n *Node, c *call) error
}

// usage is the short usage line of a pveam/pvesh verb.
// It follows verbDef.usage (pct's), including the blank Proxmox leaves
// after a verb without arguments.
func toolUsage(tool string, v *verbDef) string {
	var args []string
	for _, a := range v.args {
		if a == extraArgs {
			args = append(args, "[<"+a+">]")
		} else {
			args = append(args, "<"+a+">")
		}
	}
	s := tool + " " + v.name + " " + strings.Join(args, " ")
	if len(v.optionNames()) > 0 {
		s += " [OPTIONS]"
	}
	return s + "\n"
}

// runTool is CLIHandler's handle_cmd for pveam and pvesh: command name
// expansion, `help`, the abort texts, argument parsing and error output.
func (n *Node) runTool(tool string, verbs map[string]*toolVerb, args []string) int {
	if len(args) == 0 {
		n.toolAbort(tool, verbs, "no command specified")
		return exitFailure
	}
	name, ok := expandToolCommand(verbs, args[0])
	if !ok {
		if args[0] == "help" {
			fmt.Fprint(n.Stdout, toolUsageListing(tool, verbs))
			return 0
		}
		n.toolAbort(tool, verbs, "unknown command '"+tool+" "+args[0]+"'")
		return exitFailure
	}
	v := verbs[name]
	c, err := parseArgs(v.def, args[1:], func(s string) { fmt.Fprint(n.Stderr, s) })
	if err == nil {
		err = v.run(n, c)
	}
	return n.report(err, toolUsage(tool, v.def))
}

func expandToolCommand(verbs map[string]*toolVerb, cmd string) (string, bool) {
	if _, ok := verbs[cmd]; ok {
		return cmd, true
	}
	var hits []string
	for name := range verbs {
		if strings.HasPrefix(name, cmd) {
			hits = append(hits, name)
		}
	}
	if len(hits) == 1 && cmd != "" {
		return hits[0], true
	}
	return "", false
}

// toolUsageListing is print_usage_short's list: the commands grouped by
// their Perl class (classes sorted, a blank line between groups).
func toolUsageListing(tool string, verbs map[string]*toolVerb) string {
	names := make([]string, 0, len(verbs))
	for k := range verbs {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := verbs[names[i]], verbs[names[j]]
		if a.class != b.class {
			return a.class < b.class
		}
		return names[i] < names[j]
	})
	var b strings.Builder
	b.WriteString("USAGE: " + tool + " <COMMAND> [ARGS] [OPTIONS]\n")
	prev := ""
	for _, k := range names {
		v := verbs[k]
		if prev != "" && v.class != prev {
			b.WriteString("\n")
		}
		prev = v.class
		b.WriteString("       " + toolUsage(tool, v.def))
	}
	return b.String()
}

func (n *Node) toolAbort(tool string, verbs map[string]*toolVerb, msg string) {
	fmt.Fprint(n.Stderr, "ERROR: "+msg+"\n"+toolUsageListing(tool, verbs))
}

var storageIDSchema = &pvecfg.Schema{Type: pvecfg.TString, Format: pvecfg.VerifyStorageID}

// pveamVerbs is pve-manager's PVE::CLI::pveam command table.
var pveamVerbs = map[string]*toolVerb{
	"available": {class: "PVE::CLI::pveam", run: (*Node).pveamAvailable, def: &verbDef{name: "available",
		opts: map[string]*pvecfg.Schema{"section": {Type: pvecfg.TString, Optional: true, Enum: []string{"system", "turnkeylinux"}}}}},
	"list": {class: "PVE::CLI::pveam", run: (*Node).pveamList, def: &verbDef{name: "list", args: []string{"storage"},
		opts: map[string]*pvecfg.Schema{"storage": storageIDSchema}}},
	"download": {class: "PVE::API2::Nodes::Nodeinfo", run: (*Node).pveamDownload, def: &verbDef{name: "download", args: []string{"storage", "template"},
		opts: map[string]*pvecfg.Schema{"storage": storageIDSchema, "template": {Type: pvecfg.TString, MaxLength: 255}}}},
	"update": {class: "PVE::CLI::pveam", run: (*Node).pveamUpdate, def: &verbDef{name: "update", opts: map[string]*pvecfg.Schema{}}},
	"remove": {class: "PVE::CLI::pveam", run: (*Node).pveamRemove, def: &verbDef{name: "remove", args: []string{"template_path"},
		opts: map[string]*pvecfg.Schema{"template_path": {Type: pvecfg.TString, MaxLength: 255}}}},
}

func init() {
	// Registered here: the help text lists pveamVerbs itself.
	pveamVerbs["help"] = &toolVerb{class: "PVE::CLIHandler", run: (*Node).pveamHelp, def: &verbDef{name: "help", args: []string{extraArgs},
		opts: map[string]*pvecfg.Schema{"verbose": boolOpt}}}
}

// Pveam runs the simulated pveam command line (args without the program
// name) and returns its exit status. The appliance index is the node's
// template catalogue (see Init); downloads copy from it.
func (n *Node) Pveam(args []string) int { return n.runTool("pveam", pveamVerbs, args) }

func (n *Node) pveamHelp(c *call) error {
	fmt.Fprint(n.Stdout, toolUsageListing("pveam", pveamVerbs))
	return nil
}

// pveamUpdate is `pveam update`; the local catalogue is always current.
func (n *Node) pveamUpdate(c *call) error {
	if _, err := os.Stat(n.CatalogueDir()); err != nil {
		fmt.Fprint(n.Stderr, "update failed - see /var/log/pveam.log for details\n")
		return nil
	}
	fmt.Fprint(n.Stdout, "update successful\n")
	return nil
}

// pveamAvailable prints `%-15s %s` lines of section and template name.
func (n *Node) pveamAvailable(c *call) error {
	list, err := n.availableTemplates()
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, e := range list {
		if s, ok := c.opts["section"]; ok && s != e.Section {
			continue
		}
		fmt.Fprintf(&b, "%-15s %s\n", e.Section, e.Name)
	}
	fmt.Fprint(n.Stdout, b.String())
	return nil
}

// findStorage returns the storage.cfg stanza id, or nil when there is none.
func (n *Node) findStorage(id string) (*pvecfg.Storage, error) {
	list, err := n.readStorages()
	if err != nil {
		return nil, err
	}
	st, ok := pvecfg.FindStorage(list, id)
	if !ok {
		return nil, nil
	}
	return st, nil
}

// pveamList prints the templates of a storage: `%-60s %-6s` header, then
// `%-60s %-4.2fMB` rows of volid and size, sorted case-insensitively.
func (n *Node) pveamList(c *call) error {
	st, err := n.findStorage(c.args["storage"])
	if err != nil {
		return err
	}
	if st == nil || !st.HasContent("vztmpl") {
		return dief("Storage does not support templates!")
	}
	dir := filepath.Join(st.Path, "template", "cache")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	type row struct {
		volid string
		size  int64
	}
	var rows []row
	for _, e := range entries {
		if !e.Type().IsRegular() || !pvecfg.HasTemplateExtension(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		rows = append(rows, row{pvecfg.TemplateVolumeID(st.Name, e.Name()), info.Size()})
	}
	sort.Slice(rows, func(i, j int) bool { return strings.ToLower(rows[i].volid) < strings.ToLower(rows[j].volid) })
	var b strings.Builder
	fmt.Fprintf(&b, "%-60s %-6s\n", "NAME", "SIZE")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-60s %-4.2fMB\n", r.volid, float64(r.size)/(1024*1024))
	}
	fmt.Fprint(n.Stdout, b.String())
	return nil
}

// pveamDownload copies a catalogue template into a storage's template
// cache through a temporary file, printing the task log the real worker
// prints (without wget's progress).
func (n *Node) pveamDownload(c *call) error {
	name := c.args["template"]
	var entry *catalogueEntry
	if list, err := n.availableTemplates(); err == nil {
		for i := range list {
			if list[i].Name == name {
				entry = &list[i]
			}
		}
	}
	if entry == nil {
		return &paramError{errors: map[string]string{"template": "no such template"}}
	}
	st, err := n.findStorage(c.args["storage"])
	if err != nil {
		return err
	}
	if st == nil {
		return dief("storage '%s' does not exist", c.args["storage"])
	}
	if !st.HasContent("vztmpl") {
		return dief("storage '%s' does not support templates", st.Name)
	}
	if st.Path == "" {
		return dief("storage '%s' of type '%s' is not supported by the simulator", st.Name, st.Type)
	}
	src := filepath.Join(n.CatalogueDir(), name)
	dir := filepath.Join(st.Path, "template", "cache")
	dest := filepath.Join(dir, name)
	fmt.Fprintf(n.Stdout, "starting template download from: file://%s\n", src)
	fmt.Fprintf(n.Stdout, "target file: %s\n", dest)
	want, err := sha512File(src)
	if err != nil {
		return dief("download failed - %v", unwrapPathErr(err))
	}
	if got, err := sha512File(dest); err == nil && got == want {
		fmt.Fprintf(n.Stdout, "file already exists %s - no need to download\n", got)
		fmt.Fprint(n.Stdout, "download finished\n")
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return dief("unable to save file - %v", unwrapPathErr(err))
	}
	if err := copyFileAtomic(src, dest); err != nil {
		return dief("unable to save file - %v", unwrapPathErr(err))
	}
	fmt.Fprint(n.Stdout, "download finished\n")
	return nil
}

// pveamRemove deletes a template volume (`local:vztmpl/<file>`).
func (n *Node) pveamRemove(c *call) error {
	volid := c.args["template_path"]
	sid, volname, err := pvecfg.ParseVolumeID(volid)
	if err != nil {
		return dief("unable to parse volume ID '%s'", volid)
	}
	file, err := pvecfg.TemplateVolume(volname)
	if err != nil || strings.Contains(file, "/") {
		return dief("unable to parse directory volume name '%s'", volname)
	}
	st, err := n.findStorage(sid)
	if err != nil {
		return err
	}
	if st == nil {
		return dief("storage '%s' does not exist", sid)
	}
	_ = os.Remove(filepath.Join(st.Path, "template", "cache", file))
	return nil
}

func sha512File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
