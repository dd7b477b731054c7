package cli

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// createFlags are shared by create and run.
type createFlags struct {
	bundle, pidFile, consoleSocket, pidfdSocket string
	name, image                                 string
	noPivot, noNewKeyring                       bool
	preserveFDs                                 int
}

func (cf *createFlags) add(c *cobra.Command) {
	f := c.Flags()
	f.StringVarP(&cf.bundle, "bundle", "b", "", "OCI bundle directory (default: current directory)")
	f.StringVar(&cf.pidFile, "pid-file", "", "file to write the container's init pid to")
	f.StringVar(&cf.consoleSocket, "console-socket", "", "unix socket receiving the pty master (terminal containers)")
	f.StringVar(&cf.pidfdSocket, "pidfd-socket", "", "accepted for runc compatibility; not supported")
	f.BoolVar(&cf.noPivot, "no-pivot", false, "do not use pivot_root (passed to runc/crun)")
	f.BoolVar(&cf.noNewKeyring, "no-new-keyring", false, "do not create a new session keyring (passed to runc/crun)")
	f.IntVar(&cf.preserveFDs, "preserve-fds", 0, "pass N additional fds (3, 4, ...) to the container")
	f.StringVar(&cf.name, "name", "", "container id (nexcage style)")
	f.StringVar(&cf.image, "image", "", "Proxmox template, volume id or bundle directory (nexcage style)")
}

// fill stores the parsed flags in inv.Create. A directory holding a
// config.json given as --image is a bundle.
func (cf *createFlags) fill(verb string, inv *Invocation) error {
	if cf.pidfdSocket != "" {
		return usage("%s: --pidfd-socket is not supported", verb)
	}
	if cf.preserveFDs < 0 {
		return usage("%s: --preserve-fds must not be negative", verb)
	}
	o := &inv.Create.Options
	o.Bundle, o.Image = cf.bundle, cf.image
	o.PidFile, o.ConsoleSocket = cf.pidFile, cf.consoleSocket
	o.NoPivot, o.NoNewKeyring, o.PreserveFDs = cf.noPivot, cf.noNewKeyring, cf.preserveFDs
	if o.Image != "" {
		if fi, err := os.Stat(filepath.Join(o.Image, "config.json")); err == nil && !fi.IsDir() {
			if o.Bundle != "" {
				return usage("%s: give either --bundle or a bundle directory as --image, not both", verb)
			}
			o.Bundle, o.Image = o.Image, ""
		}
	}
	if o.Bundle == "" && o.Image == "" {
		o.Bundle = "." // runc's default: the current directory
	}
	inv.Create.ID = inv.ID
	inv.Create.Runtime = inv.Globals.Runtime
	return nil
}

func createCmd(inv *Invocation) *cobra.Command {
	var cf createFlags
	c := &cobra.Command{
		Use:   "create [flags] <id> | create --name <id> --image <image>",
		Short: "Create a container (its process starts with `start`)",
		Example: `  nexcage --root /run/nexcage create --bundle /path/to/bundle c1
  nexcage create --name web1 --image local:vztmpl/alpine-3.19-default_20240207_amd64.tar.zst
  nexcage create --name app1 --image /path/to/bundle --runtime crun`,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = "create"
			id, rest, err := idFrom("create", cf.name, args)
			if err != nil {
				return err
			}
			if err := noMore("create", rest); err != nil {
				return err
			}
			inv.ID = id
			return cf.fill("create", inv)
		},
	}
	cf.add(c)
	return c
}

func runCmd(inv *Invocation) *cobra.Command {
	var cf createFlags
	var detach, keep bool
	c := &cobra.Command{
		Use:   "run [flags] <id> | run --name <id> <image>",
		Short: "Create and start a container; without -d wait for it and return its exit code",
		Example: `  nexcage run --bundle /path/to/bundle c1
  nexcage run --name web1 local:vztmpl/alpine-3.19-default_20240207_amd64.tar.zst`,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv.Verb = "run"
			var rest []string
			if cf.name != "" {
				// nexcage style: run --name <id> <image>
				inv.ID = cf.name
				rest = args
				if len(rest) > 0 && cf.image == "" {
					cf.image, rest = rest[0], rest[1:]
				}
			} else {
				if len(args) == 0 {
					return usage("run: container id missing (give <id> or --name <id>)")
				}
				inv.ID, rest = args[0], args[1:]
			}
			if err := noMore("run", rest); err != nil {
				return err
			}
			if keep {
				return usage("run: --keep is not supported")
			}
			inv.Detach = detach
			return cf.fill("run", inv)
		},
	}
	cf.add(c)
	c.Flags().BoolVarP(&detach, "detach", "d", false, "do not wait for the container")
	c.Flags().BoolVar(&keep, "keep", false, "keep the container after it exits (not supported)")
	return c
}
