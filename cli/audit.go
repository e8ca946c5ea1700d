//go:build !agentonly

package cli

import (
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{Use: "audit", Short: "Read the audit log of every change"})
	var actor, action, target, result string
	var since, until string
	var all bool
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List audit entries, newest first",
		Long: `List the tenant's audit entries, newest first: who did what, when, to which
resource, and the result (ok or the error code). --all lists the entries of every
tenant and of operator actions (operators only).`,
		Example: `  sphere audit list --action device.release
  sphere audit list --since 2026-11-01T00:00:00Z --result error`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := a.client()
			if err != nil {
				return err
			}
			path := "/api/v1/audit"
			if !all {
				tp, err := a.tenantPath(cfg)
				if err != nil {
					return err
				}
				path = tp + "/audit"
			}
			q := url.Values{}
			for k, v := range map[string]string{"actor": actor, "action": action, "target": target, "result": result} {
				if v != "" {
					q.Set(k, v)
				}
			}
			for k, v := range map[string]string{"since": since, "until": until} {
				if v == "" {
					continue
				}
				if d, err := time.ParseDuration(v); err == nil {
					v = time.Now().Add(-d).UTC().Format(time.RFC3339)
				}
				q.Set(k, v)
			}
			var es []sphere.AuditEntry
			if limit > 0 {
				q.Set("page_size", strconv.Itoa(limit))
				var p sphere.Page[sphere.AuditEntry]
				if err := c.Do(cmd.Context(), "GET", path, q, nil, &p); err != nil {
					return err
				}
				es = p.Items
			} else if es, err = listAll[sphere.AuditEntry](cmd.Context(), c, path, q); err != nil {
				return err
			}
			rows := make([][]string, len(es))
			for i, e := range es {
				rows[i] = []string{ts(e.Time), e.Actor, e.Action, orDash(e.Target), e.Result, strconv.Itoa(e.Status)}
			}
			return a.show(es, []string{"TIME", "ACTOR", "ACTION", "TARGET", "RESULT", "STATUS"}, rows)
		},
	}
	fl := list.Flags()
	fl.StringVar(&actor, "actor", "", "only this user's actions")
	fl.StringVar(&action, "action", "", "only this action, e.g. product.create, device.release")
	fl.StringVar(&target, "target", "", "only actions on this resource id")
	fl.StringVar(&result, "result", "", "ok, error (any failure) or an error code")
	fl.StringVar(&since, "since", "", "from this RFC 3339 time, or a duration ago such as 24h")
	fl.StringVar(&until, "until", "", "before this RFC 3339 time, or a duration ago")
	fl.BoolVar(&all, "all", false, "every tenant's entries and operator actions (operators only)")
	fl.IntVar(&limit, "limit", 0, "show at most this many (newest) entries; 0 shows all")
	cmd.AddCommand(list)
	return cmd
}
