//go:build !agentonly

package cli

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
)

// errorReportFlags are the filters shared by the error-report commands.
type errorReportFlags struct {
	since, until, group, device, category, class, format string
}

func (f *errorReportFlags) register(cmd *cobra.Command, formats string) {
	fl := cmd.Flags()
	fl.StringVar(&f.since, "since", "", "only failures last seen at or after this RFC 3339 time, or a duration ago such as 24h")
	fl.StringVar(&f.until, "until", "", "only failures last seen before this RFC 3339 time, or a duration ago")
	fl.StringVar(&f.group, "device-group", "", `only devices in this device group (id or "Product/Group") when they uploaded`)
	fl.StringVar(&f.device, "device", "", "only this device")
	fl.StringVar(&f.category, "category", "", "only this category: app_exit, app_crash, app_restart_loop, update_failed, update_rolled_back, attestation_refused, agent_panic, unclean_shutdown, events_dropped")
	fl.StringVar(&f.class, "class", "", "only os or app failures")
	fl.StringVar(&f.format, "format", "", formats+" (default: table, or json with --output json)")
}

// query turns the flags into the routes' query parameters.
func (f *errorReportFlags) query(ctx context.Context, c *client.Client, tp string) (url.Values, error) {
	q := url.Values{}
	for k, v := range map[string]string{"device": f.device, "category": f.category, "class": f.class} {
		if v != "" {
			q.Set(k, v)
		}
	}
	now := time.Now()
	for k, v := range map[string]string{"since": f.since, "until": f.until} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err == nil {
			v = now.Add(-d).UTC().Format(time.RFC3339)
		} else if _, err := time.Parse(time.RFC3339, v); err != nil {
			return nil, fmt.Errorf("--%s %q is neither an RFC 3339 time (2026-11-01T00:00:00Z) nor a duration (24h)", k, v)
		}
		q.Set(k, v)
	}
	if f.group != "" {
		gid, err := resolveGroup(ctx, c, tp, f.group)
		if err != nil {
			return nil, err
		}
		q.Set("device_group", gid)
	}
	return q, nil
}

// outputFormat picks table, csv or json from --format and --output.
func (a *app) outputFormat(format string, allowed ...string) (string, error) {
	if format == "" {
		format = a.output
	}
	for _, f := range allowed {
		if format == f {
			return format, nil
		}
	}
	return "", fmt.Errorf("--format must be %s, not %q", strings.Join(allowed, ", "), format)
}

func (a *app) errorReportCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "error-report",
		Short: "Read the failures devices reported: app crashes and exits, update failures, refusals, panics",
		Long: `Read the failure reports devices upload: app exits (exit code) and crashes
(signal), restart loops, failed and rolled-back updates, refused attestations,
agent panics and unclean shutdowns, and events_dropped when a device's queue
overflowed. The service keeps them for --failure-report-retention (90 days by
default). Every command pages through all matching reports; there is no cap.`,
	})
	cmd.AddCommand(a.errorReportList(), a.errorReportSummary(), a.errorReportExport())
	return cmd
}

func (a *app) errorReportList() *cobra.Command {
	var f errorReportFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List failure reports in arrival order, every one that matches",
		Example: `  sphere error-report list --since 24h --category app_crash
  sphere error-report list --device-group "Thermostat/Field Test" --format csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := a.outputFormat(f.format, "table", "csv", "json")
			if err != nil {
				return err
			}
			return a.streamFailures(cmd.Context(), &f, format, a.stdout)
		},
	}
	f.register(cmd, "table, csv or json")
	return cmd
}

func (a *app) errorReportExport() *cobra.Command {
	var f errorReportFlags
	var dest string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export failure reports as CSV or JSON, any number of them, to a file or stdout",
		Long: `Export every matching failure report with all its fields, as CSV (default) or a
JSON array, streamed a page at a time: an export of millions of reports needs
no more memory than one page.`,
		Example: `  sphere error-report export --since 2026-11-01T00:00:00Z --destination failures.csv
  sphere error-report export --format json --device-group "Thermostat/Production" > failures.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.format == "" {
				f.format = "csv"
			}
			format, err := a.outputFormat(f.format, "csv", "json")
			if err != nil {
				return err
			}
			w := a.stdout
			if dest != "" {
				file, err := os.Create(dest)
				if err != nil {
					return err
				}
				defer file.Close()
				w = file
			}
			if err := a.streamFailures(cmd.Context(), &f, format, w); err != nil {
				return err
			}
			if file, ok := w.(*os.File); ok && dest != "" {
				return file.Close()
			}
			return nil
		},
	}
	f.register(cmd, "csv or json")
	cmd.Flags().Lookup("format").Usage = "csv or json (default csv)"
	cmd.Flags().StringVar(&dest, "destination", "", "file to write (default: stdout)")
	return cmd
}

var failureCSVHeader = []string{"seq", "received_at", "device_id", "product_id", "device_group_id", "class", "category", "description",
	"component_id", "image_id", "version", "exit_code", "signal", "count", "first_time", "last_time"}

// streamFailures writes every matching report in format, page by page.
func (a *app) streamFailures(ctx context.Context, f *errorReportFlags, format string, out io.Writer) error {
	return a.tenantCall(ctx, func(c *client.Client, tp string) error {
		q, err := f.query(ctx, c, tp)
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(out)
		var emit func(r sphere.FailureReport) error
		var endPage func() error
		finish := func() error { return nil }
		switch format {
		case "csv":
			cw := csv.NewWriter(bw)
			cw.Write(failureCSVHeader)
			emit = func(r sphere.FailureReport) error {
				code := ""
				if r.ExitCode != nil {
					code = strconv.Itoa(*r.ExitCode)
				}
				return cw.Write([]string{strconv.FormatInt(r.Seq, 10), rfc3339(r.ReceivedAt), r.DeviceID, r.ProductID, r.DeviceGroupID, r.Class, r.Category,
					r.Description, r.ComponentID, r.ImageID, r.Version, code, r.Signal, strconv.FormatInt(r.Count, 10), rfc3339(r.FirstTime), rfc3339(r.LastTime)})
			}
			endPage = func() error { cw.Flush(); return cw.Error() }
		case "json":
			n := 0
			bw.WriteString("[")
			emit = func(r sphere.FailureReport) error {
				if n > 0 {
					bw.WriteString(",")
				}
				n++
				bw.WriteString("\n  ")
				b, err := json.Marshal(r)
				bw.Write(b)
				return err
			}
			endPage = func() error { return nil }
			finish = func() error { _, err := bw.WriteString("\n]\n"); return err }
		default:
			tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LAST SEEN\tDEVICE\tCLASS\tCATEGORY\tDESCRIPTION\tCOUNT\tVERSION")
			emit = func(r sphere.FailureReport) error {
				_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", ts(r.LastTime), r.DeviceID, r.Class, r.Category, orDash(r.Description), r.Count, orDash(r.Version))
				return err
			}
			endPage = tw.Flush
		}
		q.Set("page_size", strconv.Itoa(1000))
		for {
			var p sphere.Page[sphere.FailureReport]
			if err := c.Do(ctx, "GET", tp+"/failure-reports", q, nil, &p); err != nil {
				return err
			}
			for _, r := range p.Items {
				if err := emit(r); err != nil {
					return err
				}
			}
			if err := endPage(); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if p.NextPageToken == "" {
				break
			}
			q.Set("page_token", p.NextPageToken)
		}
		if err := finish(); err != nil {
			return err
		}
		return bw.Flush()
	})
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func (a *app) errorReportSummary() *cobra.Command {
	var f errorReportFlags
	var by string
	var limit int
	cmd := &cobra.Command{
		Use:   "summary",
		Short: "Count failures by product, device group, image, version, class, category or description",
		Long: `Aggregate failure reports by the dimensions --by names (product, device_group,
device, component, image, version, class, category, description): how many
failures (the sum of the events' counts), in how many reports, on how many
devices, first and last seen. The most frequent come first.`,
		Example: `  sphere error-report summary --since 168h --by category,description
  sphere error-report summary --by device_group,image,version --category app_crash --format csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := a.outputFormat(f.format, "table", "csv", "json")
			if err != nil {
				return err
			}
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				q, err := f.query(cmd.Context(), c, tp)
				if err != nil {
					return err
				}
				q.Set("by", by)
				if limit > 0 {
					q.Set("limit", strconv.Itoa(limit))
				}
				var s api.FailureSummary
				if err := c.Do(cmd.Context(), "GET", tp+"/failure-reports/summary", q, nil, &s); err != nil {
					return err
				}
				return a.showSummary(s, format)
			})
		},
	}
	f.register(cmd, "table, csv or json")
	cmd.Flags().StringVar(&by, "by", "class,category,description", "comma-separated dimensions: product, device_group, device, component, image, version, class, category, description")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many rows, the most frequent first (default 1000, at most 10000)")
	return cmd
}

func (a *app) showSummary(s api.FailureSummary, format string) error {
	headers := make([]string, 0, len(s.By)+5)
	for _, d := range s.By {
		headers = append(headers, strings.ToUpper(d))
	}
	headers = append(headers, "FAILURES", "REPORTS", "DEVICES", "FIRST SEEN", "LAST SEEN")
	rows := make([][]string, len(s.Rows))
	for i, r := range s.Rows {
		for _, d := range s.By {
			rows[i] = append(rows[i], r.Key[d])
		}
		rows[i] = append(rows[i], strconv.FormatInt(r.Failures, 10), strconv.FormatInt(r.Events, 10), strconv.FormatInt(r.Devices, 10), ts(r.FirstTime), ts(r.LastTime))
	}
	switch format {
	case "json":
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	case "csv":
		cw := csv.NewWriter(a.stdout)
		for i := range headers {
			headers[i] = strings.ReplaceAll(strings.ToLower(headers[i]), " ", "_")
		}
		cw.Write(headers)
		cw.WriteAll(rows)
		return cw.Error()
	}
	for _, r := range rows {
		for i, v := range r[:len(s.By)] {
			r[i] = orDash(v)
		}
	}
	if err := a.show(s, headers, rows); err != nil {
		return err
	}
	if s.More {
		a.note("(more rows were left out; raise --limit or narrow the filter)")
	}
	return nil
}
