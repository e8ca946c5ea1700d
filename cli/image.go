//go:build !agentonly

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
	"github.com/opensphere/sphere/tlsutil"
	"github.com/opensphere/sphere/tufrepo"
	"github.com/opensphere/sphere/updates"
)

func (a *app) imageCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "image",
		Short: "Upload, list, show and download image packages; manage the keys that sign them",
		Long: `Images are signed packages (see sphere image-package). The service accepts an
upload only when it is signed by one of the tenant's publisher keys, checks its
payload, re-signs it with the tenant's own key (the one devices trust) and keeps
it by content hash.`,
	})
	keys := &cobra.Command{Use: "signing-key", Short: "Publisher keys whose signed packages the tenant accepts"}
	keys.AddCommand(a.signingKeyAdd("/signing-keys", true), a.signingKeyList("/signing-keys", true), a.signingKeyRevoke())
	cmd.AddCommand(a.imageAdd(), a.imageList(), a.imageShow(), a.imageDownload(), keys)
	return cmd
}

func (a *app) showSigningKeys(ks []sphere.SigningKey) error {
	rows := make([][]string, len(ks))
	for i, k := range ks {
		state := "active"
		if k.RevokedAt != nil {
			state = "revoked " + ts(*k.RevokedAt)
		}
		rows[i] = []string{k.ID, k.Role, k.Name, k.KeyID, state}
	}
	return a.show(ks, []string{"ID", "ROLE", "NAME", "KEY ID (SHA-256)", "STATE"}, rows)
}

// signingKeyAdd registers a publisher key, in the tenant (inTenant) or
// for the platform.
func (a *app) signingKeyAdd(path string, inTenant bool) *cobra.Command {
	var name, file string
	cmd := &cobra.Command{
		Use:     "add",
		Short:   "Register a publisher key (ECDSA P-256 public key, PEM)",
		Example: `  sphere image signing-key add --name "CI release key" --file signer.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pemData, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			return a.scopedCall(cmd, inTenant, func(c *client.Client, base string) error {
				var k sphere.SigningKey
				if err := c.Do(cmd.Context(), "POST", base+path, nil, api.AddSigningKey{Name: name, PublicKey: string(pemData)}, &k); err != nil {
					return err
				}
				return a.showSigningKeys([]sphere.SigningKey{k})
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "a label for the key")
	cmd.Flags().StringVar(&file, "file", "", "public key file (PEM); sphere image-package keygen prints one")
	requireFlags(cmd, "name", "file")
	return cmd
}

func (a *app) signingKeyList(path string, inTenant bool) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List signing keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.scopedCall(cmd, inTenant, func(c *client.Client, base string) error {
				var p sphere.Page[sphere.SigningKey]
				if err := c.Do(cmd.Context(), "GET", base+path, nil, nil, &p); err != nil {
					return err
				}
				return a.showSigningKeys(p.Items)
			})
		},
	}
}

// scopedCall runs fn against the tenant's API path, or the service's
// (/api/v1) for platform commands.
func (a *app) scopedCall(cmd *cobra.Command, inTenant bool, fn func(c *client.Client, base string) error) error {
	if inTenant {
		return a.tenantCall(cmd.Context(), fn)
	}
	c, _, err := a.client()
	if err != nil {
		return err
	}
	return fn(c, "/api/v1")
}

func (a *app) signingKeyRevoke() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a publisher key: uploads it signed are refused from now on (images already accepted stay)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var k sphere.SigningKey
				if err := c.Do(cmd.Context(), "DELETE", tp+"/signing-keys/"+url.PathEscape(id), nil, nil, &k); err != nil {
					return err
				}
				return a.showSigningKeys([]sphere.SigningKey{k})
			})
		},
	}
	cmd.Flags().StringVar(&id, "key", "", "signing key id, from sphere image signing-key list")
	requireFlags(cmd, "key")
	return cmd
}

func (a *app) showImages(ims []sphere.Image) error {
	rows := make([][]string, len(ims))
	for i, im := range ims {
		rows[i] = []string{im.ID, im.Kind, im.Name, im.Version, strconv.FormatUint(uint64(im.SecurityVersion), 10), im.ComponentID, ts(im.CreatedAt)}
	}
	return a.show(ims, []string{"IMAGE ID", "KIND", "NAME", "VERSION", "SECURITY VERSION", "COMPONENT", "ADDED"}, rows)
}

func (a *app) showImage(im sphere.Image) error {
	return a.showFields(im, [][2]string{{"Image ID", im.ID}, {"Kind", im.Kind}, {"Name", im.Name}, {"Version", im.Version},
		{"Security version", strconv.FormatUint(uint64(im.SecurityVersion), 10)}, {"Component ID", im.ComponentID},
		{"Built", ts(im.BuildTime)}, {"Size", strconv.FormatInt(im.Size, 10) + " bytes"}, {"Package SHA-256", im.BlobSHA256},
		{"Signed by", im.SignerKeyID}, {"Uploaded by", orDash(im.UploadedBy)}, {"Added", ts(im.CreatedAt)}})
}

func (a *app) imageAdd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:     "add",
		Short:   "Upload a signed image package (needs Contributor)",
		Example: `  sphere image add --file app.pkg`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var im sphere.Image
				if err := c.Upload(cmd.Context(), tp+"/images", f, &im); err != nil {
					return err
				}
				return a.showImage(im)
			})
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "image package made by sphere image-package pack-app or pack-os")
	requireFlags(cmd, "file")
	return cmd
}

func (a *app) imageList() *cobra.Command {
	var component, kind string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the tenant's images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				q := url.Values{}
				if component != "" {
					q.Set("component_id", component)
				}
				if kind != "" {
					q.Set("kind", kind)
				}
				ims, err := listAll[sphere.Image](cmd.Context(), c, tp+"/images", q)
				if err != nil {
					return err
				}
				return a.showImages(ims)
			})
		},
	}
	cmd.Flags().StringVar(&component, "component-id", "", "only this component's images")
	cmd.Flags().StringVar(&kind, "kind", "", "os or app")
	return cmd
}

func (a *app) imageShow() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show an image",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var im sphere.Image
				if err := c.Do(cmd.Context(), "GET", tp+"/images/"+url.PathEscape(id), nil, nil, &im); err != nil {
					return err
				}
				return a.showImage(im)
			})
		},
	}
	cmd.Flags().StringVar(&id, "image", "", "image id")
	requireFlags(cmd, "image")
	return cmd
}

func (a *app) imageDownload() *cobra.Command {
	var id, dest string
	cmd := &cobra.Command{
		Use:   "download",
		Short: "Download an image package as the service signed it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				tmp, err := os.CreateTemp(".", ".download-*")
				if err != nil {
					return err
				}
				defer os.Remove(tmp.Name())
				if err := c.Download(cmd.Context(), tp+"/images/"+url.PathEscape(id)+"/download", tmp); err != nil {
					tmp.Close()
					return err
				}
				if err := tmp.Sync(); err != nil {
					return err
				}
				tmp.Close()
				if err := os.Rename(tmp.Name(), dest); err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "Wrote image %s to %s.\n", id, dest)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&id, "image", "", "image id")
	cmd.Flags().StringVar(&dest, "destination", "", "file to write")
	requireFlags(cmd, "image", "destination")
	return cmd
}

// ---- deployments ----

func (a *app) deploymentCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "deployment",
		Short: "Deploy images to device groups, in waves that halt by themselves on failures",
		Long: `A deployment is a set of images for a device group, and the newest one is what the
group runs. It reaches the group in waves (by default 1 %, 10 %, 50 %, 100 %, a
day apart) and halts by itself when too many devices that finished failed or
rolled back. The group's update policy and OS feed still apply.`,
	})
	cmd.AddCommand(a.deploymentCreate(), a.deploymentList(), a.deploymentShow(),
		a.deploymentAct("pause"), a.deploymentAct("resume"), a.deploymentAct("halt"))
	return cmd
}

func (a *app) deploymentCreate() *cobra.Command {
	var group, waves string
	var images []string
	var dwell time.Duration
	var threshold float64
	var minSample int
	var crashRatio float64
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Deploy images to a device group (needs Contributor)",
		Example: `  sphere deployment create --device-group "Coffee Maker/Field Test" --image 3f9a... --waves 10,100 --dwell 2h`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := api.CreateDeployment{ImageIDs: images, DwellSeconds: int64(dwell / time.Second), MinSample: minSample,
				FailurePermille: int(threshold * 10), CrashRatioPercent: int(crashRatio * 100)}
			if crashRatio == 0 {
				in.CrashRatioPercent = -1 // off
			}
			if cmd.Flags().Changed("waves") {
				for _, w := range strings.Split(waves, ",") {
					n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(w, "%")))
					if err != nil {
						return fmt.Errorf("--waves: %q is not a percentage", w)
					}
					in.Waves = append(in.Waves, n)
				}
			}
			if cmd.Flags().Changed("failure-threshold") && in.FailurePermille == 0 {
				return errors.New("--failure-threshold must be above 0 %")
			}
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				gid, err := resolveGroup(cmd.Context(), c, tp, group)
				if err != nil {
					return err
				}
				in.DeviceGroup = gid
				var d sphere.Deployment
				if err := c.Do(cmd.Context(), "POST", tp+"/deployments", nil, in, &d); err != nil {
					return err
				}
				return a.showDeployment(api.DeploymentState{Deployment: d})
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&group, "device-group", "", `device group id or "Product/Group"`)
	fl.StringSliceVar(&images, "image", nil, "image id (repeat for several)")
	fl.StringVar(&waves, "waves", "1,10,50,100", "cumulative percentages of the group per wave")
	fl.DurationVar(&dwell, "dwell", 24*time.Hour, "time between waves")
	fl.Float64Var(&threshold, "failure-threshold", 5, "halt when more than this percentage of the devices that finished failed or rolled back")
	fl.IntVar(&minSample, "min-sample", 5, "finished devices needed before the failure ratio counts, and updated devices before the crash rate counts")
	fl.Float64Var(&crashRatio, "crash-ratio", 2, "halt when devices on the deployment crash more than this many times as often as devices on the previous one (failure reports of app crashes, exits and restart loops); 0 turns it off")
	requireFlags(cmd, "device-group", "image")
	return cmd
}

func (a *app) showDeployment(st api.DeploymentState) error {
	d := st.Deployment
	wave := "-"
	if d.CurrentWave < len(d.Waves) {
		wave = fmt.Sprintf("%d of %d (%d %% of the group), since %s", d.CurrentWave+1, len(d.Waves), d.Waves[d.CurrentWave], ts(d.WaveStartedAt))
	}
	fields := [][2]string{{"Deployment ID", d.ID}, {"Device group ID", d.DeviceGroupID}, {"Images", strings.Join(d.ImageIDs, ", ")},
		{"State", d.State}, {"Wave", wave}, {"Waves", fmt.Sprint(d.Waves)}, {"Dwell", (time.Duration(d.DwellSeconds) * time.Second).String()},
		{"Halts above", fmt.Sprintf("%.1f %% failed of at least %d finished", float64(d.FailurePermille)/10, d.MinSample)},
		{"Halts on crashes", crashHalt(d.CrashRatioPercent)},
		{"Created", ts(d.CreatedAt) + " by " + d.CreatedBy}}
	if d.StateReason != "" {
		fields = append(fields, [2]string{"Why", d.StateReason})
	}
	if st.Counts != nil {
		var parts []string
		for _, k := range []string{sphere.UpdatePending, sphere.UpdateDownloading, sphere.UpdateInstalled, sphere.UpdateVerified, sphere.UpdateFailed, sphere.UpdateRolledBack} {
			parts = append(parts, fmt.Sprintf("%s %d", k, st.Counts[k]))
		}
		fields = append(fields, [2]string{"Devices", fmt.Sprintf("%d in the group: %s", st.GroupDevices, strings.Join(parts, ", "))})
	}
	if st.Counts == nil { // a create or an action: JSON is the deployment itself
		return a.showFields(d, fields)
	}
	return a.showFields(st, fields)
}

func (a *app) deploymentList() *cobra.Command {
	var group string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List deployments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				q := url.Values{}
				if group != "" {
					gid, err := resolveGroup(cmd.Context(), c, tp, group)
					if err != nil {
						return err
					}
					q.Set("device_group", gid)
				}
				ds, err := listAll[sphere.Deployment](cmd.Context(), c, tp+"/deployments", q)
				if err != nil {
					return err
				}
				rows := make([][]string, len(ds))
				for i, d := range ds {
					rows[i] = []string{d.ID, d.DeviceGroupID, d.State, fmt.Sprintf("%d/%d", d.CurrentWave+1, len(d.Waves)), strconv.Itoa(len(d.ImageIDs)), ts(d.CreatedAt)}
				}
				return a.show(ds, []string{"DEPLOYMENT ID", "DEVICE GROUP ID", "STATE", "WAVE", "IMAGES", "CREATED"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&group, "device-group", "", `only this group's (id or "Product/Group")`)
	return cmd
}

func (a *app) deploymentShow() *cobra.Command {
	var id string
	var devices bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a deployment: its rollout, why it stopped if it did, and how its devices fare",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var st api.DeploymentState
				if err := c.Do(cmd.Context(), "GET", tp+"/deployments/"+url.PathEscape(id), nil, nil, &st); err != nil {
					return err
				}
				if !devices {
					return a.showDeployment(st)
				}
				us, err := listAll[sphere.DeviceUpdate](cmd.Context(), c, tp+"/deployments/"+url.PathEscape(id)+"/devices", nil)
				if err != nil {
					return err
				}
				rows := make([][]string, len(us))
				for i, u := range us {
					rows[i] = []string{u.DeviceID, u.State, orDash(u.Reason), ts(u.UpdatedAt)}
				}
				return a.show(us, []string{"DEVICE ID", "STATE", "REASON", "SINCE"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&id, "deployment", "", "deployment id")
	cmd.Flags().BoolVar(&devices, "devices", false, "list each device's state instead")
	requireFlags(cmd, "deployment")
	return cmd
}

func (a *app) deploymentAct(action string) *cobra.Command {
	var id, reason string
	cmd := &cobra.Command{
		Use:   action,
		Short: map[string]string{"pause": "Pause a rollout (needs Contributor)", "resume": "Resume a paused or halted rollout; the current wave's dwell starts again", "halt": "Halt a rollout"}[action],
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var d sphere.Deployment
				if err := c.Do(cmd.Context(), "POST", tp+"/deployments/"+url.PathEscape(id)+"/"+action, nil, api.DeploymentAction{Reason: reason}, &d); err != nil {
					return err
				}
				return a.showDeployment(api.DeploymentState{Deployment: d})
			})
		},
	}
	cmd.Flags().StringVar(&id, "deployment", "", "deployment id")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the record")
	requireFlags(cmd, "deployment")
	return cmd
}

// ---- OS releases and the platform's keys ----

func (a *app) osReleaseCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "os-release", Short: "OS releases of the platform publisher on the Retail and RetailEval feeds"}
	var file string
	publish := &cobra.Command{
		Use:   "publish",
		Short: "Publish an OS image (operators only): RetailEval groups get it now, Retail groups 14 days later",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			var rel sphere.OSRelease
			if err := c.Upload(cmd.Context(), "/api/v1/os-releases", f, &rel); err != nil {
				return err
			}
			return a.showOSReleases([]sphere.OSRelease{rel})
		},
	}
	publish.Flags().StringVar(&file, "file", "", "OS image package, signed by a platform publisher key")
	requireFlags(publish, "file")
	list := &cobra.Command{
		Use:   "list",
		Short: "List OS releases",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			var p sphere.Page[sphere.OSRelease]
			if err := c.Do(cmd.Context(), "GET", "/api/v1/os-releases", nil, nil, &p); err != nil {
				return err
			}
			return a.showOSReleases(p.Items)
		},
	}
	keys := &cobra.Command{Use: "signing-key", Short: "The platform's publisher keys for OS releases (operators only)"}
	keys.AddCommand(a.signingKeyAdd("/signing-keys", false), a.signingKeyList("/signing-keys", false), a.platformKeyRevoke())
	cmd.AddCommand(publish, list, keys)
	return cmd
}

func (a *app) showOSReleases(rs []sphere.OSRelease) error {
	rows := make([][]string, len(rs))
	for i, r := range rs {
		rows[i] = []string{r.ID, r.Name, r.Version, strconv.FormatUint(uint64(r.SecurityVersion), 10), ts(r.EvalAt), ts(r.RetailAt)}
	}
	return a.show(rs, []string{"IMAGE ID", "NAME", "VERSION", "SECURITY VERSION", "RETAILEVAL FROM", "RETAIL FROM"}, rows)
}

// ---- TUF ----

func (a *app) tufCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "tuf",
		Short: "The tenant's update metadata (The Update Framework): root, key rotation",
	})
	var dest, role string
	root := &cobra.Command{
		Use:   "root",
		Short: "Download the tenant's current TUF root, which devices pin at enrollment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				if dest == "-" {
					return c.Download(cmd.Context(), tp+"/tuf/root.json", a.stdout)
				}
				f, err := os.Create(dest)
				if err != nil {
					return err
				}
				if err := c.Download(cmd.Context(), tp+"/tuf/root.json", f); err != nil {
					f.Close()
					return err
				}
				return f.Close()
			})
		},
	}
	root.Flags().StringVar(&dest, "destination", "-", "file to write, or - for stdout")
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate an online key (targets, snapshot or timestamp); needs Administrator",
		Long: `Make a new key for the role, publish a new root that lists it (signed by the
root key), and re-sign the role with it. Devices follow the new root from the
one they pinned.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				if err := c.Do(cmd.Context(), "POST", tp+"/tuf/rotate", nil, api.RotateTUFKey{Role: role}, nil); err != nil {
					return err
				}
				a.note("Rotated the %s key.", role)
				return nil
			})
		},
	}
	rotate.Flags().StringVar(&role, "role", "", "targets, snapshot or timestamp")
	requireFlags(rotate, "role")
	cmd.AddCommand(root, rotate, a.tufRootKey(), a.tufSignRoot())
	return cmd
}

func (a *app) tufRootKey() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "root-key",
		Short: "Take the tenant's TUF root key offline: export it, then remove it from the service",
		Long: `Keep the root key of the tenant's TUF repository offline: export it to a file you
keep on an offline machine or hardware token, check it, then remove it from the
service. From then on every new root (key rotations, the yearly root renewal) waits
for "sphere tuf sign-root --key FILE". Both steps need Administrator and are
audited; the export is the one API call that returns a private key.`,
	}
	var dest string
	var confirm bool
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the TUF root private key (PEM, mode 0600) to a file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var b api.PEMBundle
				if err := c.Do(cmd.Context(), "POST", tp+"/tuf/root-key/export", nil, nil, &b); err != nil {
					return err
				}
				if err := tlsutil.WriteFileAtomic(dest, []byte(b.PEM), 0o600); err != nil {
					return err
				}
				a.note("Wrote the TUF root key to %s. Keep it offline, then run: sphere tuf root-key remove --confirm", dest)
				return nil
			})
		},
	}
	export.Flags().StringVar(&dest, "destination", "", "file to write")
	requireFlags(export, "destination")
	remove := &cobra.Command{
		Use:   "remove",
		Short: "Make the service forget the TUF root key for good (export it first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !confirm {
				return errors.New("without the exported key nobody can sign a new root; add --confirm to go ahead")
			}
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				if err := c.Do(cmd.Context(), "DELETE", tp+"/tuf/root-key", nil, api.RemoveRootKey{Confirm: true}, nil); err != nil {
					return err
				}
				a.note("The service no longer holds the TUF root key.")
				return nil
			})
		},
	}
	remove.Flags().BoolVar(&confirm, "confirm", false, "yes, forget it")
	cmd.AddCommand(export, remove)
	return cmd
}

func (a *app) tufSignRoot() *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "sign-root",
		Short: "Sign the pending TUF root with the offline root key and publish it",
		Long: `Fetch the next root that waits for the offline root key (made if none waits),
sign it here with --key (the key never leaves this machine), and publish it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keyPEM, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var pending bytes.Buffer
				if err := c.Send(cmd.Context(), "POST", tp+"/tuf/root/prepare", &pending); err != nil {
					return err
				}
				signed, err := tufrepo.SignRoot(pending.Bytes(), keyPEM)
				if err != nil {
					return err
				}
				if err := c.Do(cmd.Context(), "POST", tp+"/tuf/root/signed", nil, api.SignedRoot{Root: signed}, nil); err != nil {
					return err
				}
				a.note("Published the new TUF root.")
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "the offline root key (PEM)")
	requireFlags(cmd, "key")
	return cmd
}

// ---- device update status ----

func (a *app) showUpdateStatus(ex updates.Explanation) [][2]string {
	var f [][2]string
	state := "up to date or nothing offered"
	if len(ex.Offered) > 0 {
		var names []string
		for _, t := range ex.Offered {
			names = append(names, t.Name+" "+t.Version)
		}
		state = "offered: " + strings.Join(names, ", ")
	}
	f = append(f, [2]string{"Updates", state})
	if ex.State != "" {
		s := ex.State
		if ex.StateReason != "" {
			s += " (" + ex.StateReason + ")"
		}
		f = append(f, [2]string{"In deployment", s})
	}
	last := "never"
	if ex.LastCheck != nil {
		last = ts(*ex.LastCheck)
	}
	f = append(f, [2]string{"Last update check", last})
	for _, r := range ex.Reasons {
		f = append(f, [2]string{"Why", r})
	}
	return f
}

func (a *app) platformKeyRevoke() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a platform publisher key: OS releases it signs are refused from now on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			var k sphere.SigningKey
			if err := c.Do(cmd.Context(), "DELETE", "/api/v1/signing-keys/"+url.PathEscape(id), nil, nil, &k); err != nil {
				return err
			}
			return a.showSigningKeys([]sphere.SigningKey{k})
		},
	}
	cmd.Flags().StringVar(&id, "key", "", "signing key id, from sphere os-release signing-key list")
	requireFlags(cmd, "key")
	return cmd
}

// crashHalt describes a deployment's crash-rate halt.
func crashHalt(percent int) string {
	if percent <= 0 {
		return "off"
	}
	return fmt.Sprintf("above %.2gx the previous deployment's crash rate", float64(percent)/100)
}
