//go:build !agentonly

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
	"github.com/opensphere/sphere/updates"
)

func (a *app) deviceCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "device",
		Short: "Register devices at manufacture, claim them into the tenant, list, move and release them",
		Long: `A device is known by its identity key: its id is the lowercase hex SHA-256 of
that key's SubjectPublicKeyInfo (64 characters). Its manufacturer registers its
public keys (operators only); then a tenant claims it, and it belongs to that
tenant until an Administrator releases it.`,
	})
	cmd.AddCommand(a.deviceRegister(), a.deviceRegisterBatch(), a.deviceClaim(), a.deviceClaimBatch(), a.deviceList(), a.deviceShow(), a.deviceUpdate(), a.deviceRelease(),
		a.deviceRevoke(), a.deviceUnrevoke(), a.deviceCheckNow())
	return cmd
}

func (a *app) showDevices(ctx context.Context, c *client.Client, tp string, ds []sphere.Device) error {
	if a.output == "json" {
		return a.show(ds, nil, nil)
	}
	names, err := groupNames(ctx, c, tp)
	if err != nil {
		return err
	}
	rows := make([][]string, len(ds))
	for i, d := range ds {
		group := "(unassigned)"
		if d.DeviceGroupID != "" {
			group = names[d.DeviceGroupID]
		}
		rows[i] = []string{d.ID, group, tsPtr(d.ClaimedAt)}
	}
	return a.show(ds, []string{"DEVICE ID", "DEVICE GROUP", "CLAIMED"}, rows)
}

func (a *app) showDevice(d sphere.Device) error {
	ek := "none"
	if d.EKCertificate != "" {
		ek = "present"
	}
	fields := [][2]string{{"Device ID", d.ID}, {"Tenant ID", orDash(d.TenantID)}, {"Product ID", orDash(d.ProductID)},
		{"Device group ID", orDash(d.DeviceGroupID)}, {"Root of trust", d.RoT}, {"Registered", ts(d.RegisteredAt)}, {"Claimed", tsPtr(d.ClaimedAt)},
		{"EK certificate", ek}}
	if d.RevokedAt != nil {
		fields = append(fields, [2]string{"Revoked", ts(*d.RevokedAt) + ": " + d.RevokedReason})
	}
	if la := d.LastAttestation; la != nil {
		last := ts(la.At) + " " + la.Result
		if la.Reason != "" {
			last += " (" + la.Reason + ")"
		}
		fields = append(fields, [2]string{"Last attestation", last})
		if la.Detail != "" {
			fields = append(fields, [2]string{"", la.Detail})
		}
	} else {
		fields = append(fields, [2]string{"Last attestation", "never"})
	}
	fields = append(fields, [2]string{"Certificate expires", tsPtr(d.CertNotAfter)})
	return a.showFields(d, fields)
}

// deviceRecord is the registration record a device prints at manufacture
// (`sphere agent identity`): its public keys and, to check them, its id.
type deviceRecord struct {
	api.RegisterDevice
	DeviceID string `json:"device_id,omitempty"`
}

func readFileFlag(name, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", name, err)
	}
	return string(b), nil
}

func (a *app) deviceRegister() *cobra.Command {
	var file, idKey, akKey, ek string
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register a device's public keys at manufacture (operators only)",
		Long: `Register a device from its registration record (JSON with identity_public_key,
attestation_public_key, optional ek_certificate and device_id), or from PEM
files. Registering the same keys again is harmless.`,
		Example: `  sphere device register --file record.json
  sphere device register --identity-key id.pub --attestation-key ak.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rec deviceRecord
			switch {
			case file != "" && (idKey != "" || akKey != ""):
				return errors.New("give either --file or --identity-key/--attestation-key, not both")
			case file != "":
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(b, &rec); err != nil {
					return fmt.Errorf("%s is not a JSON registration record: %w", file, err)
				}
			case idKey != "" && akKey != "":
				var err error
				if rec.IdentityPublicKey, err = readFileFlag("identity-key", idKey); err != nil {
					return err
				}
				if rec.AttestationPublicKey, err = readFileFlag("attestation-key", akKey); err != nil {
					return err
				}
				if rec.EKCertificate, err = readFileFlag("ek-cert", ek); err != nil {
					return err
				}
			default:
				return errors.New("give --file record.json, or both --identity-key and --attestation-key")
			}
			c, _, err := a.client()
			if err != nil {
				return err
			}
			var d sphere.Device
			if err := c.Do(cmd.Context(), "POST", "/api/v1/devices", nil, rec.RegisterDevice, &d); err != nil {
				return err
			}
			if rec.DeviceID != "" && rec.DeviceID != d.ID {
				return fmt.Errorf("the record says device id %s but its identity key gives %s: the record is inconsistent", rec.DeviceID, d.ID)
			}
			return a.showDevice(d)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&file, "file", "", "registration record (JSON) printed by sphere agent identity")
	fl.StringVar(&idKey, "identity-key", "", "identity public key file (PEM or DER)")
	fl.StringVar(&akKey, "attestation-key", "", "attestation public key file (PEM or DER)")
	fl.StringVar(&ek, "ek-cert", "", "TPM endorsement key certificate file (PEM), optional")
	return cmd
}

func devicePath(tp, id string) string { return tp + "/devices/" + url.PathEscape(id) }

func (a *app) deviceClaim() *cobra.Command {
	var group string
	cmd := a.oneDevice(&cobra.Command{
		Use:     "claim [DEVICE_ID]",
		Short:   "Claim a registered device into the tenant (needs Contributor)",
		Example: `  sphere device claim 3f9a... --device-group "Coffee Maker/Development"`,
	}, func(ctx context.Context, c *client.Client, tp, id string) error {
		var in api.ClaimDevice
		if group != "" {
			gid, err := resolveGroup(ctx, c, tp, group)
			if err != nil {
				return err
			}
			in.DeviceGroup = gid
		}
		var d sphere.Device
		if err := c.Do(ctx, "POST", devicePath(tp, id)+"/claim", nil, in, &d); err != nil {
			return err
		}
		return a.showDevice(d)
	})
	cmd.Flags().StringVar(&group, "device-group", "", `device group id or "Product/Group" (default: unassigned)`)
	return cmd
}

func (a *app) deviceList() *cobra.Command {
	var product, group string
	var unassigned bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tenant's devices",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				q := url.Values{}
				if product != "" {
					q.Set("product", product)
				}
				if group != "" {
					gid, err := resolveGroup(cmd.Context(), c, tp, group)
					if err != nil {
						return err
					}
					q.Set("device_group", gid)
				}
				if unassigned {
					q.Set("unassigned", "true")
				}
				ds, err := listAll[sphere.Device](cmd.Context(), c, tp+"/devices", q)
				if err != nil {
					return err
				}
				return a.showDevices(cmd.Context(), c, tp, ds)
			})
		},
	}
	cmd.Flags().StringVar(&product, "product", "", "only devices of this product (name or id)")
	cmd.Flags().StringVar(&group, "device-group", "", `only devices in this group (id or "Product/Group")`)
	cmd.Flags().BoolVar(&unassigned, "unassigned", false, "only devices in no group")
	return cmd
}

func (a *app) deviceShow() *cobra.Command {
	return a.oneDevice(&cobra.Command{
		Use:   "show [DEVICE_ID]",
		Short: "Show a device, its last attestation and why it is (not) updating",
	}, func(ctx context.Context, c *client.Client, tp, id string) error {
		var d sphere.Device
		if err := c.Do(ctx, "GET", devicePath(tp, id), nil, nil, &d); err != nil {
			return err
		}
		var ex updates.Explanation
		if err := c.Do(ctx, "GET", devicePath(tp, id)+"/update-status", nil, nil, &ex); err != nil {
			return err
		}
		if a.output == "json" {
			return a.show(struct {
				sphere.Device
				Updates updates.Explanation `json:"updates"`
			}{d, ex}, nil, nil)
		}
		if err := a.showDevice(d); err != nil {
			return err
		}
		return a.showFields(nil, a.showUpdateStatus(ex))
	})
}

func (a *app) deviceUpdate() *cobra.Command {
	var group string
	cmd := a.oneDevice(&cobra.Command{
		Use:     "update [DEVICE_ID]",
		Short:   "Move a device to another device group (needs Contributor)",
		Example: `  sphere device update 3f9a... --device-group "Coffee Maker/Field Test"`,
	}, func(ctx context.Context, c *client.Client, tp, id string) error {
		gid, err := resolveGroup(ctx, c, tp, group)
		if err != nil {
			return err
		}
		var d sphere.Device
		if err := c.Do(ctx, "PATCH", devicePath(tp, id), nil, api.UpdateDevice{DeviceGroup: gid}, &d); err != nil {
			return err
		}
		return a.showDevice(d)
	})
	cmd.Flags().StringVar(&group, "device-group", "", `target device group id or "Product/Group"`)
	requireFlags(cmd, "device-group")
	return cmd
}

func (a *app) deviceRelease() *cobra.Command {
	var confirm bool
	cmd := a.oneDevice(&cobra.Command{
		Use:   "release [DEVICE_ID]",
		Short: "Release the tenant's claim on a device (needs Administrator and --confirm; audited)",
		Long: `Release the tenant's claim on a device. The device leaves the tenant and its
group; it stays registered, and any tenant may claim it again. This is written
to the audit log and needs --confirm.`,
	}, func(ctx context.Context, c *client.Client, tp, id string) error {
		if !confirm {
			return errors.New("releasing a device removes it from this tenant; add --confirm to go ahead")
		}
		var d sphere.Device
		if err := c.Do(ctx, "POST", devicePath(tp, id)+"/release", nil, api.ReleaseDevice{Confirm: true}, &d); err != nil {
			return err
		}
		if a.output == "json" {
			return a.show(d, nil, nil)
		}
		a.note("Released device %s.", d.ID)
		return nil
	})
	cmd.Flags().BoolVar(&confirm, "confirm", false, "yes, release it")
	return cmd
}

func (a *app) deviceRevoke() *cobra.Command {
	var reason string
	cmd := a.oneDevice(&cobra.Command{
		Use:   "revoke [DEVICE_ID]",
		Short: "Revoke a device: attestation is refused from now on (needs Administrator)",
		Long: `Revoke a device. Its attestations are refused with reason device_revoked, so it
gets no new certificate, and the device API refuses its current certificate at
once. Device certificates live 24 hours, so elsewhere (brokers, clouds) the last
one stops working within a day without any revocation list. Undo with
` + "`sphere device unrevoke`" + `.`,
		Example: `  sphere device revoke 3f9a... --reason "reported stolen"`,
	}, func(ctx context.Context, c *client.Client, tp, id string) error {
		var d sphere.Device
		if err := c.Do(ctx, "POST", devicePath(tp, id)+"/revoke", nil, api.RevokeDevice{Reason: reason}, &d); err != nil {
			return err
		}
		return a.showDevice(d)
	})
	cmd.Flags().StringVar(&reason, "reason", "", "why (shown with every refused attestation)")
	requireFlags(cmd, "reason")
	return cmd
}

func (a *app) deviceUnrevoke() *cobra.Command {
	return a.oneDevice(&cobra.Command{
		Use:   "unrevoke [DEVICE_ID]",
		Short: "Lift a device's revocation (needs Administrator)",
	}, func(ctx context.Context, c *client.Client, tp, id string) error {
		var d sphere.Device
		if err := c.Do(ctx, "POST", devicePath(tp, id)+"/unrevoke", nil, nil, &d); err != nil {
			return err
		}
		return a.showDevice(d)
	})
}

// oneDevice completes a command that acts on one device of the tenant,
// named by its id as the argument or with --device: it takes the id and
// the tenant's API path, and runs run.
func (a *app) oneDevice(cmd *cobra.Command, run func(ctx context.Context, c *client.Client, tp, id string) error) *cobra.Command {
	var flag string
	cmd.Args = cobra.MaximumNArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := deviceArg(flag, args)
		if err != nil {
			return err
		}
		return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error { return run(cmd.Context(), c, tp, id) })
	}
	cmd.Flags().StringVar(&flag, "device", "", "device id (or give it as the argument)")
	return cmd
}

// deviceArg takes the device id from --device or the one argument.
func deviceArg(flag string, args []string) (string, error) {
	switch {
	case len(args) == 1 && flag != "" && args[0] != flag:
		return "", errors.New("give the device id once, as an argument or with --device")
	case len(args) == 1:
		return args[0], nil
	case flag == "":
		return "", errors.New("which device? give its id as an argument or with --device")
	}
	return flag, nil
}

func (a *app) deviceCheckNow() *cobra.Command {
	return a.oneDevice(&cobra.Command{
		Use:   "check-now [DEVICE_ID]",
		Short: "Ask a device to check for updates at its next contact (needs Contributor)",
	}, func(ctx context.Context, c *client.Client, tp, id string) error {
		if err := c.Do(ctx, "POST", devicePath(tp, id)+"/check-now", nil, nil, nil); err != nil {
			return err
		}
		a.note("Device %s will check for updates at its next contact.", id)
		return nil
	})
}
