package pvesim

import (
	"os"
	"strings"
)

// injectedFault implements PVESIM_FAIL=<entry>[;<entry>...], where an
// entry is `[<tool>:]<verb>:<message>`: tool is pct (the default), pveam
// or pvesh; verb is the (expanded) command name; message is printed on
// stderr with `{vmid}` replaced, and the command exits 255 before it
// changes anything. The first entry matching tool and verb wins.
func (n *Node) injectedFault(tool, verb, vmid string) error {
	msg, ok := lookupFault(os.Getenv("PVESIM_FAIL"), tool, verb)
	if !ok {
		return nil
	}
	return &cliError{text: strings.TrimSuffix(strings.ReplaceAll(msg, "{vmid}", vmid), "\n") + "\n"}
}

func lookupFault(spec, tool, verb string) (string, bool) {
	for _, entry := range strings.Split(spec, ";") {
		if entry == "" {
			continue
		}
		t := "pct"
		for _, candidate := range []string{"pct:", "pveam:", "pvesh:"} {
			if strings.HasPrefix(entry, candidate) {
				t = strings.TrimSuffix(candidate, ":")
				entry = entry[len(candidate):]
				break
			}
		}
		v, msg, found := strings.Cut(entry, ":")
		if !found || t != tool || v != verb {
			continue
		}
		return msg, true
	}
	return "", false
}
