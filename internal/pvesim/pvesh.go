package pvesim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/nexcage/nexcage/internal/pvesim/pvecfg"
)

// apiHandler is one API path the simulated pvesh serves.
type apiHandler struct {
	method  string         // GET, POST, PUT, DELETE
	pattern *regexp.Regexp // anchored, over the path without leading/trailing slashes
	params  map[string]*pvecfg.Schema
	run     func(n *Node, m []string, c *call) (any, error)
	// exists limits the path to the versions that have it (nil: all).
	exists func(pvecfg.Version) bool
}

var apiHandlers = []*apiHandler{
	{method: "GET", pattern: regexp.MustCompile(`^cluster/nextid$`),
		params: map[string]*pvecfg.Schema{"vmid": {Type: pvecfg.TInteger, Optional: true, Min: fptr(100), Max: fptr(999999999)}},
		run:    (*Node).apiNextID},
	{method: "GET", pattern: regexp.MustCompile(`^nodes/([^/]+)/lxc$`), run: (*Node).apiLxcIndex},
	{method: "GET", pattern: regexp.MustCompile(`^nodes/([^/]+)/lxc/([^/]+)/status/current$`), run: (*Node).apiLxcStatus},
	{method: "POST", pattern: regexp.MustCompile(`^nodes/([^/]+)/storage/([^/]+)/oci-registry-pull$`),
		params: map[string]*pvecfg.Schema{"reference": {Type: pvecfg.TString}, "filename": strOpt},
		run:    (*Node).apiOCIPull, exists: pvecfg.Version.HasOCI}, // PVE 9.1
}

var pveshMethods = map[string]string{"get": "GET", "set": "PUT", "create": "POST", "delete": "DELETE"}

func findAPIHandler(method, apiPath string, v pvecfg.Version) (*apiHandler, []string) {
	p := strings.Trim(regexp.MustCompile(`/+`).ReplaceAllString(apiPath, "/"), "/")
	for _, h := range apiHandlers {
		if h.method != method || (h.exists != nil && !h.exists(v)) {
			continue
		}
		if m := h.pattern.FindStringSubmatch(p); m != nil {
			return h, m
		}
	}
	return nil, nil
}

// Pvesh runs the simulated pvesh command line. It serves the handful of
// API paths nexcage needs (see docs/PVESIM.md); every other path fails
// as an unknown one does on Proxmox.
func (n *Node) Pvesh(args []string) int {
	// pvesh's compatibility flags come before the command.
	for len(args) > 0 && (args[0] == "--noproxy" || args[0] == "--nooutput") {
		args = args[1:]
	}
	// Like extract_path_info, an unknown path fails before any parsing.
	var handler *apiHandler
	var match []string
	if len(args) >= 2 {
		if method, ok := pveshMethods[args[0]]; ok {
			handler, match = findAPIHandler(method, args[1], n.PVEVersion())
			if handler == nil {
				fmt.Fprintf(n.Stderr, "No '%s' handler defined for '%s'\n", args[0], args[1])
				return 1
			}
		}
	}
	verbs := map[string]*toolVerb{}
	for _, name := range []string{"get", "set", "create", "delete"} {
		opts := map[string]*pvecfg.Schema{
			"api_path":       {Type: pvecfg.TString},
			"noproxy":        boolOpt,
			"quiet":          boolOpt,
			"output-format":  {Type: pvecfg.TString, Optional: true, Enum: []string{"text", "json", "json-pretty", "yaml"}},
			"human-readable": boolOpt,
			"noborder":       boolOpt,
			"noheader":       boolOpt,
		}
		if handler != nil {
			for k, v := range handler.params {
				opts[k] = v
			}
		}
		verbs[name] = &toolVerb{class: "PVE::CLI::pvesh", def: &verbDef{name: name, args: []string{"api_path"}, opts: opts},
			run: func(n *Node, c *call) error {
				if handler == nil {
					return dief("no '%s' handler for '%s'", name, c.args["api_path"])
				}
				data, err := handler.run(n, match, c)
				if err != nil || c.flag("quiet") {
					return err
				}
				return n.printAPIResult(data, c.opts["output-format"])
			}}
	}
	verbs["help"] = &toolVerb{class: "PVE::CLIHandler", def: &verbDef{name: "help", args: []string{extraArgs},
		opts: map[string]*pvecfg.Schema{"verbose": boolOpt}}, run: func(n *Node, c *call) error {
		fmt.Fprint(n.Stdout, toolUsageListing("pvesh", verbs))
		return nil
	}}
	return n.runTool("pvesh", verbs, args)
}

// apiNextID is GET /cluster/nextid: the lowest free id >= 100 of the
// whole cluster, or the given vmid if it is free.
func (n *Node) apiNextID(m []string, c *call) (any, error) {
	list, err := pvecfg.ReadVMList(n.VMListPath())
	if err != nil {
		return nil, err
	}
	if s, ok := c.opts["vmid"]; ok {
		id, _ := strconv.Atoi(s)
		if _, used := list.Lookup(id); used {
			return nil, &paramError{errors: map[string]string{"vmid": fmt.Sprintf("VM %d already exists", id)}}
		}
		return id, nil
	}
	id := list.NextID(100, 1000000)
	if id == 0 {
		return nil, dief("unable to get any free VMID in range [100, 1000000]")
	}
	return id, nil
}

// checkNode fails like the API's proxy step does for a node that is not
// part of the cluster.
func (n *Node) checkNode(node string) error {
	if st, err := os.Stat(filepath.Join(n.EtcPve(), "nodes", node)); err != nil || !st.IsDir() {
		return dief("hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", node, node)
	}
	return nil
}

// apiLxcIndex is GET /nodes/<node>/lxc: vmstatus of the node's containers.
func (n *Node) apiLxcIndex(m []string, c *call) (any, error) {
	node := m[1]
	if err := n.checkNode(node); err != nil {
		return nil, err
	}
	list, err := pvecfg.ReadVMList(n.VMListPath())
	if err != nil {
		return nil, err
	}
	other := *n
	other.Name = node
	res := []any{}
	for _, id := range list.VMIDs() {
		e, _ := list.Lookup(id)
		if e.Node != node || e.Type != "lxc" {
			continue
		}
		conf, err := other.loadConfQuiet(id)
		if err != nil {
			continue
		}
		st, err := other.vmStatus(id, conf)
		if err != nil {
			return nil, err
		}
		res = append(res, typedStatus(st))
	}
	return res, nil
}

// apiLxcStatus is GET /nodes/<node>/lxc/<vmid>/status/current.
func (n *Node) apiLxcStatus(m []string, c *call) (any, error) {
	node := m[1]
	if err := n.checkNode(node); err != nil {
		return nil, err
	}
	vmid, err := pvecfg.ParseVMID(m[2])
	if err != nil {
		return nil, &paramError{errors: map[string]string{"vmid": "invalid format - value does not look like a valid VM ID"}}
	}
	other := *n
	other.Name = node
	conf, err := other.loadConfQuiet(vmid)
	if err != nil {
		return nil, err
	}
	st, err := other.vmStatus(vmid, conf)
	if err != nil {
		return nil, err
	}
	return typedStatus(st), nil
}

// apiOCIPull is POST /nodes/<node>/storage/<storage>/oci-registry-pull:
// the simulator has no network, so it refuses clearly after the checks
// the real handler makes first.
func (n *Node) apiOCIPull(m []string, c *call) (any, error) {
	ref, ok := c.opts["reference"]
	if !ok {
		return nil, &paramError{errors: map[string]string{"reference": "property is missing and it is not optional"}}
	}
	if err := n.checkNode(m[1]); err != nil {
		return nil, err
	}
	st, err := n.findStorage(m[2])
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, dief("storage '%s' does not exist", m[2])
	}
	if !st.HasContent("vztmpl") {
		return nil, dief("storage '%s' does not support templates", st.Name)
	}
	return nil, dief("pvesim: registry pulls are not available in the simulator (no network) - cannot pull '%s'; place an OCI archive in %s instead",
		ref, filepath.Join(st.Path, "template", "cache"))
}

// typedStatus gives vmstatus values their JSON types: numbers stay
// numbers, the textual keys stay strings.
func typedStatus(st map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range st {
		switch k {
		case "name", "status", "type", "lock", "tags":
			out[k] = v
			continue
		}
		if i, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[k] = i
		} else if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = f
		} else {
			out[k] = v
		}
	}
	return out
}

// printAPIResult is PVE::CLIFormatter::print_api_result for the shapes
// the simulated paths return.
func (n *Node) printAPIResult(data any, format string) error {
	if format == "" {
		format = "text"
	}
	switch format {
	case "json":
		b, err := json.Marshal(data)
		if err != nil {
			return err
		}
		fmt.Fprintf(n.Stdout, "%s\n", b)
	case "json-pretty":
		var b strings.Builder
		perlPrettyJSON(&b, data, 0)
		b.WriteString("\n")
		fmt.Fprint(n.Stdout, b.String())
	default: // text and yaml: scalars as is, objects and lists as key: value blocks
		switch v := data.(type) {
		case nil:
		case []any:
			for i, item := range v {
				if i > 0 {
					fmt.Fprintln(n.Stdout)
				}
				printKV(n, item)
			}
		case map[string]any:
			printKV(n, v)
		default:
			fmt.Fprintf(n.Stdout, "%v\n", v)
		}
	}
	return nil
}

func printKV(n *Node, item any) {
	m, ok := item.(map[string]any)
	if !ok {
		fmt.Fprintf(n.Stdout, "%v\n", item)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(n.Stdout, "%s: %v\n", k, m[k])
	}
}

// perlPrettyJSON writes JSON like Perl's JSON with pretty and canonical:
// three-space indent, `"key" : value`, sorted keys.
func perlPrettyJSON(b *strings.Builder, v any, depth int) {
	ind := strings.Repeat("   ", depth+1)
	end := strings.Repeat("   ", depth)
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			b.WriteString("{}")
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("{\n")
		for i, k := range keys {
			kb, _ := json.Marshal(k)
			b.WriteString(ind + string(kb) + " : ")
			perlPrettyJSON(b, x[k], depth+1)
			if i < len(keys)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString(end + "}")
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, e := range x {
			b.WriteString(ind)
			perlPrettyJSON(b, e, depth+1)
			if i < len(x)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString(end + "]")
	default:
		s, _ := json.Marshal(x)
		b.Write(s)
	}
}
