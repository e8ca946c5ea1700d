package store

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/opensphere/sphere"
)

const (
	workers        = 8
	opsPerWorker   = 20
	concurrentRuns = workers * opsPerWorker
)

func TestConcurrentCreateProductDistinctNames(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		errs := make(chan error, concurrentRuns)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range opsPerWorker {
					_, err := a.CreateProduct(ctx, fmt.Sprintf("Product %d %d", w, i), "")
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("CreateProduct: %v", err)
			}
		}
		page, err := a.ListProducts(ctx, ProductFilter{}, PageRequest{Size: MaxPageSize})
		if err != nil || len(page.Items) != concurrentRuns {
			t.Fatalf("ListProducts: got %d products, %v; want %d", len(page.Items), err, concurrentRuns)
		}
		if got, want := countRows(t, s, "device_groups", ""), concurrentRuns*len(sphere.DefaultDeviceGroups); got != want {
			t.Fatalf("device groups: got %d, want %d", got, want)
		}
	})
}

func TestConcurrentCreateProductSameName(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		a := s.Tenant(mustTenant(t, s, "Contoso").ID)
		// Every worker tries every name: per name, exactly one may win.
		type result struct {
			name string
			err  error
		}
		results := make(chan result, concurrentRuns)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range opsPerWorker {
					name := fmt.Sprintf("Product %d", i)
					_, err := a.CreateProduct(ctx, name, "")
					results <- result{name, err}
				}
			})
		}
		wg.Wait()
		close(results)
		wins := map[string]int{}
		for r := range results {
			switch code := codeOf(r.err); code {
			case "":
				wins[r.name]++
			case sphere.EConflict:
			default:
				t.Errorf("CreateProduct(%q): got %v (code %q), want success or %s", r.name, r.err, code, sphere.EConflict)
			}
		}
		for i := range opsPerWorker {
			if name := fmt.Sprintf("Product %d", i); wins[name] != 1 {
				t.Errorf("%q: %d creates succeeded, want exactly 1", name, wins[name])
			}
		}
		if got, want := countRows(t, s, "products", ""), opsPerWorker; got != want {
			t.Fatalf("products: got %d rows, want %d", got, want)
		}
		if got, want := countRows(t, s, "device_groups", ""), opsPerWorker*len(sphere.DefaultDeviceGroups); got != want {
			t.Fatalf("device groups: got %d rows, want %d (a lost race must not leave groups behind)", got, want)
		}
	})
}
