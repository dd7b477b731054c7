package cli

import "github.com/spf13/cobra"

// DocsRoot returns nexcage's full command tree, for generating man pages
// and shell completions (cmd/nexcage-gendocs). Running it fills a
// throw-away Invocation; it is meant to be walked, not executed.
func DocsRoot() *cobra.Command {
	return newRoot(&Invocation{})
}
