package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var docsRef = regexp.MustCompile(`docs/[A-Za-z0-9_./-]+\.md`)

// TestHelpPointsToPagesThatExist: every docs/….md a help text sends the
// reader to exists, and a flag's page talks about that flag.
func TestHelpPointsToPagesThatExist(t *testing.T) {
	refs := 0
	check := func(where, text, flag string) {
		for _, ref := range docsRef.FindAllString(text, -1) {
			refs++
			page, err := os.ReadFile(filepath.Join("..", "..", ref))
			if err != nil {
				t.Errorf("%s points to %s, which does not exist", where, ref)
				continue
			}
			if flag != "" && !strings.Contains(string(page), "--"+flag) {
				t.Errorf("%s points to %s, which never mentions --%s", where, ref, flag)
			}
		}
	}
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		check(cmd.CommandPath(), cmd.Short+"\n"+cmd.Long, "")
		for _, fs := range []*pflag.FlagSet{cmd.LocalFlags(), cmd.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				check(cmd.CommandPath()+" --"+f.Name, f.Usage, f.Name)
			})
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(strings.NewReader(""), os.Stdout, os.Stderr))
	if refs == 0 {
		t.Fatal("no help text mentions a docs/….md page: is the pattern still right?")
	}
}
