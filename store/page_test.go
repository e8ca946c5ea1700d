package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

// pager lists one page of some list as the keys of its items.
type pager func(PageRequest) (keys []string, next string, err error)

func pagerOf[T any](list func(PageRequest) (sphere.Page[T], error), key func(T) string) pager {
	return func(p PageRequest) ([]string, string, error) {
		page, err := list(p)
		if err != nil {
			return nil, "", err
		}
		if page.Items == nil {
			return nil, "", fmt.Errorf("nil items; want an empty list")
		}
		return ids(page.Items, key), page.NextPageToken, nil
	}
}

// walkPages follows next_page_token from the first page to the last and
// returns every key in the order listed.
func walkPages(t *testing.T, list pager, size int) []string {
	t.Helper()
	full := size
	if full == 0 {
		full = DefaultPageSize
	}
	var all []string
	token := ""
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatalf("size %d: more than 100 pages; the walk does not end", size)
		}
		keys, next, err := list(PageRequest{Size: size, Token: token})
		if err != nil {
			t.Fatalf("size %d, page %d: %v", size, i, err)
		}
		if next != "" && len(keys) != full {
			t.Fatalf("size %d, page %d: got %d items and a next page, want %d", size, i, len(keys), full)
		}
		if next == "" && len(keys) == 0 && i > 0 {
			t.Fatalf("size %d, page %d: the last page is empty; the page before should have had no next_page_token", size, i)
		}
		all = append(all, keys...)
		if next == "" {
			return all
		}
		token = next
	}
}

func TestPagination(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		alice, _ := mustUser(t, s, "alice")
		var tenants, aliceTenants []string
		for i, name := range []string{"Contoso", "Fabrikam", "Northwind", "Tailspin", "Woodgrove"} {
			admin := ""
			if i != 1 {
				admin = alice.ID
			}
			tn, err := s.CreateTenant(ctx, name, admin)
			if err != nil {
				t.Fatal(err)
			}
			tenants = append(tenants, tn.ID)
			if admin != "" {
				aliceTenants = append(aliceTenants, tn.ID)
			}
		}
		a, b := s.Tenant(tenants[0]), s.Tenant(tenants[1])

		var products []string
		for _, name := range []string{"Coffee Maker", "Toaster", "Kettle", "Blender"} {
			products = append(products, mustProduct(t, a, name).ID)
		}
		mustProduct(t, b, "Fridge")
		groups, err := a.ListDeviceGroups(ctx, DeviceGroupFilter{}, PageRequest{Size: MaxPageSize})
		if err != nil || len(groups.Items) != 4*len(sphere.DefaultDeviceGroups) {
			t.Fatalf("ListDeviceGroups: got %d groups, %v", len(groups.Items), err)
		}

		var claimed, registered []string
		for i := range 6 {
			d := mustDevice(t, s)
			registered = append(registered, d.ID)
			switch {
			case i < 4:
				if _, err := a.ClaimDevice(ctx, d.ID, groups.Items[i].ID); err != nil {
					t.Fatal(err)
				}
				claimed = append(claimed, d.ID)
			case i == 4:
				if _, err := b.ClaimDevice(ctx, d.ID, ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		sort.Strings(claimed)
		sort.Strings(registered)

		var roleUsers []string
		for _, name := range []string{"bob", "carol", "dave"} {
			ra, _, err := a.AddRole(ctx, name, sphere.RoleReader)
			if err != nil {
				t.Fatal(err)
			}
			roleUsers = append(roleUsers, ra.UserID)
		}
		roleUsers = append(roleUsers, alice.ID)
		sort.Strings(roleUsers)

		tokenID := func(t sphere.Token) string { return t.ID }
		initial, err := s.ListTokens(ctx, alice.ID, PageRequest{})
		if err != nil {
			t.Fatal(err)
		}
		tokens := ids(initial.Items, tokenID)
		for i := range 4 {
			tok, _, err := s.CreateToken(ctx, alice.ID, fmt.Sprintf("token %d", i), nil)
			if err != nil {
				t.Fatal(err)
			}
			tokens = append(tokens, tok.ID)
		}

		var audit, allAudit []string
		for i := range 7 {
			tenant := a.ID()
			if i%3 == 2 {
				tenant = b.ID()
			}
			rid := "r" + strconv.Itoa(i)
			if err := s.AppendAudit(ctx, sphere.AuditEntry{TenantID: tenant, Actor: "alice", Action: "x", Result: "ok", RequestID: rid}); err != nil {
				t.Fatal(err)
			}
			allAudit = append([]string{rid}, allAudit...)
			if tenant == a.ID() {
				audit = append([]string{rid}, audit...)
			}
		}
		requestID := func(e sphere.AuditEntry) string { return e.RequestID }

		lists := []struct {
			name string // as in the page token
			list pager
			want []string
		}{
			{"tenants", pagerOf(func(p PageRequest) (sphere.Page[sphere.Tenant], error) { return s.ListTenants(ctx, TenantFilter{}, p) }, tenantID), tenants},
			{"tenants", pagerOf(func(p PageRequest) (sphere.Page[sphere.Tenant], error) {
				return s.ListTenants(ctx, TenantFilter{MemberID: alice.ID}, p)
			}, tenantID), aliceTenants},
			{"products", pagerOf(func(p PageRequest) (sphere.Page[sphere.Product], error) {
				return a.ListProducts(ctx, ProductFilter{}, p)
			}, productID), products},
			{"device-groups", pagerOf(func(p PageRequest) (sphere.Page[sphere.DeviceGroup], error) {
				return a.ListDeviceGroups(ctx, DeviceGroupFilter{}, p)
			}, groupID), ids(groups.Items, groupID)},
			{"device-groups", pagerOf(func(p PageRequest) (sphere.Page[sphere.DeviceGroup], error) {
				return a.ListDeviceGroups(ctx, DeviceGroupFilter{Product: products[1]}, p)
			}, groupID), ids(groups.Items[5:10], groupID)},
			{"devices", pagerOf(func(p PageRequest) (sphere.Page[sphere.Device], error) { return a.ListDevices(ctx, DeviceFilter{}, p) }, deviceID), claimed},
			{"all-devices", pagerOf(func(p PageRequest) (sphere.Page[sphere.Device], error) { return s.ListAllDevices(ctx, false, p) }, deviceID), registered},
			{"roles", pagerOf(func(p PageRequest) (sphere.Page[sphere.RoleAssignment], error) { return a.ListRoles(ctx, p) }, roleUserID), roleUsers},
			{"tokens", pagerOf(func(p PageRequest) (sphere.Page[sphere.Token], error) { return s.ListTokens(ctx, alice.ID, p) }, tokenID), tokens},
			{"audit", pagerOf(func(p PageRequest) (sphere.Page[sphere.AuditEntry], error) { return a.ListAudit(ctx, AuditFilter{}, p) }, requestID), audit},
			{"audit", pagerOf(func(p PageRequest) (sphere.Page[sphere.AuditEntry], error) {
				return s.ListAllAudit(ctx, AuditFilter{}, p)
			}, requestID), allAudit},
		}
		for i, l := range lists {
			t.Run(fmt.Sprintf("%s %d", l.name, i), func(t *testing.T) {
				if len(l.want) < 4 {
					t.Fatalf("test setup: want at least 4 rows to page through, have %d", len(l.want))
				}
				for _, size := range []int{1, 2, 3, len(l.want), len(l.want) + 1, 0, MaxPageSize} {
					if got := walkPages(t, l.list, size); !slices.Equal(got, l.want) {
						t.Fatalf("size %d: got %v, want %v", size, got, l.want)
					}
				}

				// A real token of a different list.
				other := lists[(i+1)%len(lists)]
				for other.name == l.name {
					other = lists[(i+2)%len(lists)]
				}
				_, foreign, err := other.list(PageRequest{Size: 1})
				if err != nil || foreign == "" {
					t.Fatalf("test setup: no page token from %s: %v", other.name, err)
				}
				_, own, err := l.list(PageRequest{Size: 1})
				if err != nil || own == "" {
					t.Fatalf("test setup: no page token: %v", err)
				}
				tests := []struct {
					name string
					req  PageRequest
				}{
					{"error/size -1", PageRequest{Size: -1}},
					{"error/size 1001", PageRequest{Size: MaxPageSize + 1}},
					{"error/size -1 with a good token", PageRequest{Size: -1, Token: own}},
					{"error/garbage token", PageRequest{Token: "garbage!"}},
					{"error/base64 without the prefix", PageRequest{Token: base64.RawURLEncoding.EncodeToString([]byte("hello"))}},
					{"error/empty key", PageRequest{Token: pageToken(l.name, "")}},
					{"error/token of another list", PageRequest{Token: foreign}},
				}
				for _, tt := range tests {
					t.Run(tt.name, func(t *testing.T) {
						_, _, err := l.list(tt.req)
						checkCode(t, err, sphere.EInvalid)
					})
				}
			})
		}
		t.Run("error/audit token that is not a sequence number", func(t *testing.T) {
			_, err := a.ListAudit(ctx, AuditFilter{}, PageRequest{Token: pageToken("audit", "12x")})
			checkCode(t, err, sphere.EInvalid)
		})
	})
}

// TestDefaultPageSize lists more rows than fit on a default page.
func TestDefaultPageSize(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const n = DefaultPageSize + 1
		// One transaction, so that SQLite syncs once rather than n times.
		err := s.tx(ctx, func(q *querier) error {
			for i := range n {
				if _, err := q.exec(ctx, "INSERT INTO audit_log (time, tenant_id, actor_id, actor, action, target, result, status, request_id) VALUES (?, NULL, '', 'alice', 'x', '', 'ok', 200, ?)",
					time.Now().UnixMicro(), strconv.Itoa(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		first, err := s.ListAllAudit(ctx, AuditFilter{}, PageRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(first.Items) != DefaultPageSize || first.NextPageToken == "" {
			t.Fatalf("page size 0: got %d items (next %q), want %d and a next page", len(first.Items), first.NextPageToken, DefaultPageSize)
		}
		rest, err := s.ListAllAudit(ctx, AuditFilter{}, PageRequest{Token: first.NextPageToken})
		if err != nil || len(rest.Items) != 1 || rest.NextPageToken != "" || rest.Items[0].RequestID != "0" {
			t.Fatalf("second page: got %+v, %v; want the oldest entry alone", rest, err)
		}
		max, err := s.ListAllAudit(ctx, AuditFilter{}, PageRequest{Size: MaxPageSize})
		if err != nil || len(max.Items) != n || max.NextPageToken != "" {
			t.Fatalf("page size %d: got %d items, %v; want %d", MaxPageSize, len(max.Items), err, n)
		}
	})
}

func TestPageRequestCursor(t *testing.T) {
	tests := []struct {
		name      string
		req       PageRequest
		wantSize  int
		wantAfter string
		wantCode  string
	}{
		{"ok/zero value", PageRequest{}, DefaultPageSize, "", ""},
		{"ok/size 1", PageRequest{Size: 1}, 1, "", ""},
		{"ok/max size", PageRequest{Size: MaxPageSize}, MaxPageSize, "", ""},
		{"ok/token", PageRequest{Size: 5, Token: pageToken("products", "k:1")}, 5, "k:1", ""},
		{"error/negative", PageRequest{Size: -1}, 0, "", sphere.EInvalid},
		{"error/over max", PageRequest{Size: MaxPageSize + 1}, 0, "", sphere.EInvalid},
		{"error/other list", PageRequest{Token: pageToken("product", "k")}, 0, "", sphere.EInvalid},
		{"error/list name prefix", PageRequest{Token: pageToken("productsx", "k")}, 0, "", sphere.EInvalid},
		{"error/old token version", PageRequest{Token: base64.RawURLEncoding.EncodeToString([]byte("p0:products:k"))}, 0, "", sphere.EInvalid},
		{"error/not base64", PageRequest{Token: "a b"}, 0, "", sphere.EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, after, err := tt.req.cursor("products")
			checkCode(t, err, tt.wantCode)
			if size != tt.wantSize || after != tt.wantAfter {
				t.Fatalf("got size %d after %q, want %d after %q", size, after, tt.wantSize, tt.wantAfter)
			}
		})
	}
}

// FuzzPageToken checks that no page_token a client sends panics the cursor
// or yields an empty key.
func FuzzPageToken(f *testing.F) {
	f.Add(pageToken("products", "0192"), 10)
	f.Add("", 0)
	f.Add("cDE6cHJvZHVjdHM6", -1)
	f.Fuzz(func(t *testing.T, token string, size int) {
		got, after, err := PageRequest{Size: size, Token: token}.cursor("products")
		if err != nil {
			if code := codeOf(err); code != sphere.EInvalid {
				t.Fatalf("got code %q, want %q", code, sphere.EInvalid)
			}
			return
		}
		if got < 1 || got > MaxPageSize || (token != "" && after == "") {
			t.Fatalf("accepted size %d, after %q for token %q", got, after, token)
		}
	})
}
