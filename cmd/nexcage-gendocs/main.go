// Command nexcage-gendocs writes nexcage's man pages (section 8, one per
// verb) and its bash, zsh and fish completions into a directory:
//
//	nexcage-gendocs -out bin/docs [-version v] [-gzip]
//
// giving <out>/man8/nexcage*.8 and <out>/completions/{nexcage.bash,_nexcage,nexcage.fish}.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nexcage/nexcage/internal/cli"
	"github.com/nexcage/nexcage/internal/docgen"
	"github.com/nexcage/nexcage/internal/version"
)

func main() {
	out := flag.String("out", "", "output directory (required)")
	ver := flag.String("version", version.Version, "version shown in the man pages")
	gz := flag.Bool("gzip", false, "gzip the man pages")
	date := flag.String("date", "", "date of the man pages, YYYY-MM-DD (default: today, or $SOURCE_DATE_EPOCH)")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: nexcage-gendocs -out <dir> [-version v] [-gzip] [-date YYYY-MM-DD]")
		os.Exit(2)
	}
	o := docgen.Options{Version: *ver, Gzip: *gz}
	if *date != "" {
		d, err := time.Parse(time.DateOnly, *date)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nexcage-gendocs: -date: %v\n", err)
			os.Exit(2)
		}
		o.Date = d
	}
	files, err := docgen.Generate(cli.DocsRoot(), *out, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nexcage-gendocs: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "nexcage-gendocs: %d man pages and 3 completion scripts in %s\n", len(files.Man), *out)
}
