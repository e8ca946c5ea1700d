//go:build !agentonly

package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
	"github.com/opensphere/sphere/store"
)

// batchSummary is what the bulk commands print with --output json.
type batchSummary struct {
	Count     int      `json:"count"`
	DeviceIDs []string `json:"device_ids"`
}

func (a *app) deviceRegisterBatch() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "register-batch",
		Short: "Register many devices from a file of registration records (operators only)",
		Long: `Register many devices at once: --file holds registration records as printed by
"sphere agent identity", one after another (or one per line), or as a JSON array.
They go to the service 10,000 a call; each call is all or nothing, and a refused
call names the bad record by its index in the file. Registering the same keys again
is harmless.`,
		Example: `  sphere device register-batch --file line-7-records.jsonl`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			recs, err := readRecords(file)
			if err != nil {
				return err
			}
			c, _, err := a.client()
			if err != nil {
				return err
			}
			var out batchSummary
			err = inBatches(len(recs), func(lo, hi int) error {
				in := api.RegisterDevices{Devices: make([]api.RegisterDevice, 0, hi-lo)}
				for _, r := range recs[lo:hi] {
					in.Devices = append(in.Devices, r.RegisterDevice)
				}
				var b api.DeviceBatch
				if err := c.Do(cmd.Context(), "POST", "/api/v1/device-batches", nil, in, &b); err != nil {
					return err
				}
				for i, id := range b.DeviceIDs {
					if want := recs[lo+i].DeviceID; want != "" && want != id {
						return fmt.Errorf("record %d says device id %s but its identity key gives %s: the record is inconsistent", lo+i, want, id)
					}
				}
				out.DeviceIDs = append(out.DeviceIDs, b.DeviceIDs...)
				return nil
			})
			out.Count = len(out.DeviceIDs)
			return a.batchDone("registered", out, err)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "registration records (JSON), one after another or as an array")
	cmd.MarkFlagRequired("file")
	return cmd
}

func (a *app) deviceClaimBatch() *cobra.Command {
	var file, group string
	cmd := &cobra.Command{
		Use:   "claim-batch",
		Short: "Claim many registered devices into the tenant and a device group (needs Contributor)",
		Long: `Claim many devices at once: --file holds device ids, one per line (blank lines and
lines starting with # are skipped). They go to the service 10,000 a call; each call
is all or nothing, and a refused call names the device by its index in the file.`,
		Example: `  sphere device claim-batch --file ids.txt --device-group "Coffee Maker/Field Test"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ids, err := readIDs(file)
			if err != nil {
				return err
			}
			var out batchSummary
			err = a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				in := api.ClaimDevices{}
				if group != "" {
					gid, err := resolveGroup(cmd.Context(), c, tp, group)
					if err != nil {
						return err
					}
					in.DeviceGroup = gid
				}
				return inBatches(len(ids), func(lo, hi int) error {
					in.DeviceIDs = ids[lo:hi]
					if err := c.Do(cmd.Context(), "POST", tp+"/device-claims", nil, in, nil); err != nil {
						return err
					}
					out.DeviceIDs = append(out.DeviceIDs, ids[lo:hi]...)
					return nil
				})
			})
			out.Count = len(out.DeviceIDs)
			return a.batchDone("claimed", out, err)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "device ids, one per line")
	cmd.Flags().StringVar(&group, "device-group", "", "device group (id, or PRODUCT/GROUP) to put them in")
	cmd.MarkFlagRequired("file")
	return cmd
}

// inBatches calls fn for [lo, hi) slices of n items, store.MaxBatch at a
// time, and says which batch failed.
func inBatches(n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += store.MaxBatch {
		hi := min(lo+store.MaxBatch, n)
		if err := fn(lo, hi); err != nil {
			if lo == 0 && hi == n {
				return err
			}
			return fmt.Errorf("items %d to %d (%d before them are done): %w", lo, hi-1, lo, err)
		}
	}
	return nil
}

// batchDone prints what a bulk command did, also when it stopped part way.
func (a *app) batchDone(verb string, out batchSummary, err error) error {
	if a.output == "json" && err == nil {
		return a.show(out, nil, nil)
	}
	if out.Count > 0 || err == nil {
		fmt.Fprintf(a.stdout, "%s %d devices\n", verb, out.Count)
	}
	return err
}

// readRecords reads registration records: a JSON array, or objects one
// after another.
func readRecords(path string) ([]deviceRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var recs []deviceRecord
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		if err := json.Unmarshal(t, &recs); err != nil {
			return nil, fmt.Errorf("%s is not a JSON array of registration records: %w", path, err)
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(b))
		for {
			var r deviceRecord
			if err := dec.Decode(&r); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: record %d is not a JSON registration record: %w", path, len(recs), err)
			}
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s holds no registration records", path)
	}
	return recs, nil
}

// readIDs reads device ids, one per line.
func readIDs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			ids = append(ids, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s holds no device ids", path)
	}
	return ids, nil
}
