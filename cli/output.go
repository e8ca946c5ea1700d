package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/client"
)

// show prints v as JSON with --output json, or as a table made of headers
// and rows otherwise.
func (a *app) show(v any, headers []string, rows [][]string) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// showFields prints one object as a two-column table (or JSON).
func (a *app) showFields(v any, fields [][2]string) error {
	if a.output == "json" {
		return a.show(v, nil, nil)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], f[1])
	}
	return tw.Flush()
}

// note prints a message for people; it is left out of JSON output so that
// scripts get clean JSON on stdout.
func (a *app) note(format string, args ...any) {
	if a.output == "json" {
		fmt.Fprintf(a.stderr, format+"\n", args...)
		return
	}
	fmt.Fprintf(a.stdout, format+"\n", args...)
}

// ts formats a time for tables, in UTC so that output does not depend on
// the machine's time zone.
func ts(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

func tsPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return ts(*t)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listAll follows next_page_token until the list ends, so that a list
// command shows everything however long the list is.
func listAll[T any](ctx context.Context, c *client.Client, path string, q url.Values) ([]T, error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("page_size", strconv.Itoa(1000))
	var all []T
	for {
		var p sphere.Page[T]
		if err := c.Do(ctx, "GET", path, q, nil, &p); err != nil {
			return nil, err
		}
		all = append(all, p.Items...)
		if p.NextPageToken == "" {
			if all == nil {
				all = []T{}
			}
			return all, nil
		}
		q.Set("page_token", p.NextPageToken)
	}
}

// newLogger makes the logger of --log-level and --log-format (serve and
// agent).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q is not text or json", format)
}
