package store

import (
	"context"
	"encoding/base64"
	"strings"

	"github.com/opensphere/sphere"
)

// DefaultPageSize and MaxPageSize bound how many rows one list call returns.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// PageRequest asks for one page of a list. The zero value asks for the first
// page of DefaultPageSize rows.
type PageRequest struct {
	Size  int
	Token string
}

// pageTokenPrefix versions the opaque token format and tags it with the list
// it belongs to, so a token from one list is refused by another.
const pageTokenPrefix = "p1:"

// cursor validates the request and returns the page size and the key after
// which the page starts ("" for the first page).
func (p PageRequest) cursor(list string) (size int, after string, err error) {
	size = p.Size
	switch {
	case size == 0:
		size = DefaultPageSize
	case size < 0 || size > MaxPageSize:
		return 0, "", sphere.Errorf(sphere.EInvalid, "page_size must be between 1 and %d, got %d", MaxPageSize, size)
	}
	if p.Token == "" {
		return size, "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(p.Token)
	key, ok := strings.CutPrefix(string(raw), pageTokenPrefix+list+":")
	if err != nil || !ok || key == "" {
		return 0, "", sphere.Errorf(sphere.EInvalid, "page_token is not valid for this list; pass back the next_page_token of the previous page unchanged")
	}
	return size, key, nil
}

func pageToken(list, key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + list + ":" + key))
}

// finishPage trims the one extra row fetched to learn whether another page
// exists, and makes the token for it.
func finishPage[T any](items []T, size int, list string, key func(T) string) sphere.Page[T] {
	if items == nil {
		items = []T{}
	}
	if len(items) <= size {
		return sphere.Page[T]{Items: items}
	}
	items = items[:size]
	return sphere.Page[T]{Items: items, NextPageToken: pageToken(list, key(items[size-1]))}
}

// Each calls fn for every item of a paged list, a page of MaxPageSize at a
// time, and stops at the first error. list fetches one page.
func Each[T any](list func(PageRequest) (sphere.Page[T], error), fn func(T) error) error {
	p := PageRequest{Size: MaxPageSize}
	for {
		page, err := list(p)
		if err != nil {
			return err
		}
		for _, item := range page.Items {
			if err := fn(item); err != nil {
				return err
			}
		}
		if page.NextPageToken == "" {
			return nil
		}
		p.Token = page.NextPageToken
	}
}

// EachTenant calls fn for every tenant that f selects.
func (s *Store) EachTenant(ctx context.Context, f TenantFilter, fn func(sphere.Tenant) error) error {
	return Each(func(p PageRequest) (sphere.Page[sphere.Tenant], error) { return s.ListTenants(ctx, f, p) }, fn)
}
