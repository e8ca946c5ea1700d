package cli

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/rot"
)

// agentFlags are the options shared by the agent commands.
type agentFlags struct {
	server, stateDir, rotKind, tpmDevice, caFile string
	logLevel, logFormat                          string
	adminSocket, appSocket                       string
	mqttBroker, mqttCAFile                       string
	mqttProtocol, mqttUsername                   string
	boardFile                                    string
	noSandbox                                    bool
	update                                       updateFlags
}

func (f *agentFlags) register(cmd *cobra.Command, withServer bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.stateDir, "state-dir", "/var/lib/sphere-agent", "the agent's state: key blobs (TPM) or keys (soft), the device certificate")
	fl.StringVar(&f.rotKind, "rot", "tpm", "root of trust: tpm, or soft for development and simulation (keys in files)")
	fl.StringVar(&f.tpmDevice, "tpm", "", "TPM device (default /dev/tpmrm0, falling back to /dev/tpm0), or tcp:HOST:PORT for a socket TPM such as swtpm in a lab")
	if withServer {
		fl.StringVar(&f.server, "server", "", "the security service, e.g. https://sphere.example.com:8443")
		fl.StringVar(&f.caFile, "ca-file", "", "PEM bundle of CAs the device trusts for the service's TLS certificate (default: the system's)")
		fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
		fl.StringVar(&f.logFormat, "log-format", "text", "text or json")
		fl.StringVar(&f.adminSocket, "admin-socket", defaultAdminSocket, "where to serve the local admin API for `sphere agent status|app|update-check` (root only; empty: none)")
		fl.StringVar(&f.appSocket, "app-socket", "", "where to serve the API for apps (uplink, update deferral), told apart by their uids; empty: <state-dir>/app.sock; \"off\": none. Not under /run or /tmp, which compartments hide")
		fl.StringVar(&f.mqttBroker, "mqtt-broker", "", "the cloud's MQTT broker, mqtts://HOST:PORT: the agent connects with the device certificate and apps holding DeviceAuthentication publish and subscribe through it (empty: no uplink)")
		fl.StringVar(&f.boardFile, "board", "", "the board description mapping manifest peripherals (Gpio, Uart, ...) to device files (docs/sandbox.md); empty: a board without peripherals")
		fl.BoolVar(&f.noSandbox, "no-sandbox", false, "run apps without compartments, as the agent's user: for development only")
		fl.StringVar(&f.mqttCAFile, "mqtt-ca-file", "", "PEM bundle of CAs for the broker's TLS certificate (default: the system's)")
		fl.StringVar(&f.mqttProtocol, "mqtt-protocol", "5", "MQTT version: 5, or 3.1.1 for brokers that need it (Azure IoT Hub; docs/clouds/mqtt.md)")
		fl.StringVar(&f.mqttUsername, "mqtt-username", "", "MQTT user name, for brokers that want one beside the certificate (Azure IoT Hub: {hub}.azure-devices.net/{device id}/?api-version=2021-04-12)")
	}
}

// registerUpdate adds the update engine's flags (only `sphere agent` runs it).
func (f *agentFlags) registerUpdate(cmd *cobra.Command) {
	f.update.register(cmd.Flags())
}

// openRoT opens the root of trust the flags name.
func (f *agentFlags) openRoT() (rot.RootOfTrust, error) {
	switch f.rotKind {
	case "tpm":
		return rot.OpenTPM(rot.TPMConfig{StateDir: f.stateDir, Device: f.tpmDevice})
	case "soft":
		return rot.OpenSoft(f.stateDir)
	}
	return nil, fmt.Errorf("--rot must be tpm or soft, not %q", f.rotKind)
}

func (a *app) agentCommand() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the device agent: measured state, daily attestation and certificates",
		Long: `Run the device agent. It measures its own binary and settings into the root of
trust, attests to the security service at start and again every 20 to 24 hours
(renewing the 24-hour device certificate at about two thirds of its life), retries
with exponential backoff and jitter, and uses the certificate, whose key never
leaves the root of trust, for mutual TLS on every later call to the service.

With --bootloader and --slot-a/--slot-b it also installs OS images into the
inactive slot, and it always installs the apps of its device group's deployment
into versioned app slots: it checks at start, every 20 to 24 hours, on "sphere
agent update-check" and when the service asks at attestation; it verifies each
package (TUF, the tenant's signature, the security version), switches for a
trial, checks health (apps up for --health-window, a healthy attestation of the
new measurements), then commits or rolls back by itself (docs/updates.md).

Before it can attest, the device must be registered (see "sphere agent identity")
and claimed into a tenant and a device group, and the tenant must allow what the
device measures (see "sphere agent measurements").`,
		Example: `  sphere agent --server https://sphere.example.com:8443 --ca-file /etc/sphere/service-ca.pem --state-dir /var/lib/sphere-agent --rot tpm`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ag, r, log, err := a.agentSetup(&f)
			if err != nil {
				return err
			}
			defer r.Close()
			return runAgent(cmd.Context(), ag, r, log, &f)
		},
	}
	f.register(cmd, true)
	f.registerUpdate(cmd)
	cmd.AddCommand(a.agentIdentity(), a.agentMeasurements(), a.agentAttestOnce(), a.agentStatus(), a.agentApp(), a.agentUpdateCheck())
	return cmd
}

// agentSetup opens the root of trust and makes an agent from the flags.
func (a *app) agentSetup(f *agentFlags) (*agent.Agent, rot.RootOfTrust, *slog.Logger, error) {
	if f.server == "" {
		return nil, nil, nil, errors.New("--server is required")
	}
	log, err := newLogger(a.stderr, f.logLevel, f.logFormat)
	if err != nil {
		return nil, nil, nil, err
	}
	roots, err := readPool("--ca-file", f.caFile)
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := f.openRoT()
	if err != nil {
		return nil, nil, nil, err
	}
	if r.Kind() == rot.KindSoft {
		log.Warn("the root of trust is SOFTWARE: keys are files that anyone with access can copy; for development and simulation only")
	}
	ag, err := agent.New(agent.Config{Server: f.server, StateDir: f.stateDir, RoT: r, ServerRoots: roots, Logger: log})
	if err != nil {
		r.Close()
		return nil, nil, nil, err
	}
	return ag, r, log, nil
}

// readPool reads a PEM bundle of CAs named by flag; an empty path is nil
// (the system's pool).
func readPool(flag, path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pemData, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("%s %s holds no PEM certificate", flag, path)
	}
	return pool, nil
}

func (a *app) agentAttestOnce() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "attest",
		Short: "Measure, attest once and print the result (provisioning and diagnosis; not while the agent runs)",
		Long: `Measure, attest once and print the service's answer: healthy (the certificate is
stored in --state-dir), stale or refused with the reason. It starts a fresh
measurement log in the root of trust, so do not run it beside a running agent on
the same TPM: use it at the end of provisioning or to diagnose a device.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ag, r, _, err := a.agentSetup(&f)
			if err != nil {
				return err
			}
			defer r.Close()
			if err := ag.Measure(); err != nil {
				return err
			}
			res, err := ag.Attest(cmd.Context())
			var ae *agent.AttestError
			if err != nil && !errors.As(err, &ae) {
				return err
			}
			if a.output == "json" {
				if err := a.show(res, nil, nil); err != nil {
					return err
				}
			} else {
				fields := [][2]string{{"Device ID", res.DeviceID}, {"Result", res.Result}}
				if res.Reason != "" {
					fields = append(fields, [2]string{"Reason", res.Reason}, [2]string{"Detail", res.Detail})
				}
				if !res.NotAfter.IsZero() {
					fields = append(fields, [2]string{"Certificate expires", ts(res.NotAfter)},
						[2]string{"Certificate file", filepath.Join(f.stateDir, "device.crt")})
				}
				if err := a.showFields(res, fields); err != nil {
					return err
				}
			}
			return err
		},
	}
	f.register(cmd, true)
	return cmd
}

func (a *app) agentIdentity() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Print the device's registration record (JSON), creating its keys on first use",
		Long: `Print the device's registration record: its id (SHA-256 of the identity key),
the kind of root of trust, the identity and attestation public keys, and the TPM
endorsement key certificate when the TPM has one. The keys are made in the root
of trust the first time. At manufacture, give the record to
"sphere device register --file record.json".`,
		Example: `  sphere agent identity --rot tpm --state-dir /var/lib/sphere-agent > record.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := f.openRoT()
			if err != nil {
				return err
			}
			defer r.Close()
			rec, err := agent.IdentityRecord(r)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rec)
		},
	}
	f.register(cmd, false)
	return cmd
}

func (a *app) agentMeasurements() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "measurements",
		Short: "Print what the agent measures (type, name, SHA-256), to allow it in the tenant",
		Long: `Print the measurements the agent makes at start, with the same --server and
--rot it runs with, so that an operator can allow them:
"sphere measurement allow --type TYPE --digest SHA256".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := f.openRoT()
			if err != nil {
				return err
			}
			defer r.Close()
			ag, err := agent.New(agent.Config{Server: f.server, StateDir: f.stateDir, RoT: r})
			if err != nil {
				return err
			}
			events, err := ag.Measurements()
			if err != nil {
				return err
			}
			rows := make([][]string, len(events))
			for i, e := range events {
				rows[i] = []string{e.Type, e.Name, e.Digest}
			}
			return a.show(events, []string{"TYPE", "NAME", "SHA-256"}, rows)
		},
	}
	f.register(cmd, true)
	return cmd
}
