//go:build !agentonly

package cli

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
	"github.com/opensphere/sphere/tlsutil"
)

func (a *app) caCertCommand() *cobra.Command {
	cmd := a.tenantFlag(&cobra.Command{
		Use:   "ca-certificate",
		Short: "The tenant's certificate authorities: list, download, chain, proof of possession",
		Long: `Each tenant has its own CA (ECDSA P-256, two years) under the service's root CA;
device certificates are issued by the tenant's Active CA. A successor CA is made
90 days before the Active one expires and becomes Active 45 days later; during
the overlap relying parties must trust both, which the chain bundle does.`,
	})
	cmd.AddCommand(a.caList(), a.caDownload(), a.caDownloadChain(), a.caDownloadProof())
	return cmd
}

func (a *app) caList() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the tenant's CAs with their states (Active, Inactive, Expired, Revoked)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var p sphere.Page[api.CACertificate]
				if err := c.Do(cmd.Context(), "GET", tp+"/ca-certificates", nil, nil, &p); err != nil {
					return err
				}
				rows := make([][]string, len(p.Items))
				for i, x := range p.Items {
					rows[i] = []string{x.ID, x.State, ts(x.NotBefore), ts(x.NotAfter), ts(x.ActivatesAt), x.Thumbprint}
				}
				return a.show(p.Items, []string{"ID", "STATE", "NOT BEFORE", "NOT AFTER", "ACTIVE FROM", "THUMBPRINT (SHA-256)"}, rows)
			})
		},
	}
}

// writePEM writes PEM to a file (or stdout for "-").
func (a *app) writePEM(dest, pemData, what string) error {
	if dest == "-" {
		_, err := fmt.Fprint(a.stdout, pemData)
		return err
	}
	if err := tlsutil.WriteFileAtomic(dest, []byte(pemData), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "Wrote %s to %s.\n", what, dest)
	return nil
}

func (a *app) caDownload() *cobra.Command {
	var id, dest string
	cmd := &cobra.Command{
		Use:     "download",
		Short:   "Download a tenant CA certificate (PEM)",
		Example: `  sphere ca-certificate download --destination tenant-ca.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var x api.CACertificate
				if err := c.Do(cmd.Context(), "GET", tp+"/ca-certificates/"+url.PathEscape(id), nil, nil, &x); err != nil {
					return err
				}
				return a.writePEM(dest, x.PEM, "CA "+x.ID)
			})
		},
	}
	cmd.Flags().StringVar(&id, "ca", "active", "CA id, or active")
	cmd.Flags().StringVar(&dest, "destination", "-", "file to write, or - for stdout")
	return cmd
}

func (a *app) caDownloadChain() *cobra.Command {
	var dest string
	cmd := &cobra.Command{
		Use:   "download-chain",
		Short: "Download the chain bundle relying parties should trust: every usable tenant CA, then the root",
		Long: `Download the chain bundle: every tenant CA that is neither expired nor revoked,
then the service root CA. Give it to MQTT brokers and clouds as the CA file; it
already holds the successor during a CA rotation, so download it again after
each rotation.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var b api.PEMBundle
				if err := c.Do(cmd.Context(), "GET", tp+"/ca-certificates/chain", nil, nil, &b); err != nil {
					return err
				}
				return a.writePEM(dest, b.PEM, "the chain bundle")
			})
		},
	}
	cmd.Flags().StringVar(&dest, "destination", "-", "file to write, or - for stdout")
	return cmd
}

func (a *app) caDownloadProof() *cobra.Command {
	var id, code, dest string
	cmd := &cobra.Command{
		Use:   "download-proof",
		Short: "Make a proof-of-possession certificate for registering the tenant CA with a cloud (needs Administrator)",
		Long: `Make a certificate whose subject CN is the verification code a cloud gave you,
signed by the tenant CA's private key: AWS IoT's registration code or Azure DPS's
verification code. Upload it to the cloud to prove you hold the CA. Its own key
is thrown away at once, so it can never be used to connect.`,
		Example: `  sphere ca-certificate download-proof --code 1a2b3c... --destination proof.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.tenantCall(cmd.Context(), func(c *client.Client, tp string) error {
				var b api.PEMBundle
				if err := c.Do(cmd.Context(), "POST", tp+"/ca-certificates/"+url.PathEscape(id)+"/proof", nil, api.CreateProof{Code: code}, &b); err != nil {
					return err
				}
				return a.writePEM(dest, b.PEM, "the proof-of-possession certificate")
			})
		},
	}
	cmd.Flags().StringVar(&id, "ca", "active", "CA id, or active")
	cmd.Flags().StringVar(&code, "code", "", "verification code from the cloud")
	cmd.Flags().StringVar(&dest, "destination", "-", "file to write, or - for stdout")
	requireFlags(cmd, "code")
	return cmd
}
