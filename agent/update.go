package agent

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/bootloader"
	"github.com/opensphere/sphere/fetch"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/internal/backoff"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/supervisor"
	"github.com/opensphere/sphere/tlsutil"
)

// UpdateConfig configures the update engine. Zero values mean what each
// field says.
type UpdateConfig struct {
	// Dir holds the journal, the pinned trust (TUF metadata and the image
	// signing key), the staging area and the app slots
	// (Dir/apps/<component>/<image id>/). Empty means <StateDir>/update.
	Dir string
	// Bootloader is the A/B switch of the OS slots. Nil means the engine
	// installs no OS images (it logs and skips OS targets).
	Bootloader bootloader.Bootloader
	// Slots are the files or block devices of OS slots a and b. Required
	// with a Bootloader.
	Slots map[bootloader.Slot]string
	// Apps runs the installed apps. Nil means the engine installs no apps.
	Apps AppRunner
	// HealthWindow is how long apps must stay up after a switch before it
	// is committed; zero means 1 minute.
	HealthWindow time.Duration
	// CheckEvery is the time between scheduled checks, to which up to
	// CheckJitter is added at random; zero means 20 hours and 4 hours.
	CheckEvery, CheckJitter time.Duration
	// Reboot restarts the device after an OS slot is armed or rolled back.
	// Nil means an OS install stops there with an error saying a reboot is
	// needed; the next start carries on.
	Reboot func() error
	// BytesPerSecond caps download bandwidth; 0 means unlimited.
	BytesPerSecond int64
	// MaxDeferOS and MaxDeferApp bound how long apps may defer an install,
	// counted from when it was first offered; zero means 24 and 168 hours.
	MaxDeferOS, MaxDeferApp time.Duration
	// Failpoint, when set, is called at every step boundary of an install
	// with its name (tests kill the process there).
	Failpoint func(name string)
}

// AppRunner is what the engine needs of the app supervisor
// (*supervisor.Supervisor implements it).
type AppRunner interface {
	Set(apps []supervisor.App)
	Healthy(componentID, imageID string, minUp time.Duration) (ok bool, reason string)
	Status() []supervisor.AppStatus
}

// Updater is the agent's update engine: it checks for updates, installs
// them into the inactive slot, switches, checks health and commits or
// rolls back, resuming from its journal after any restart.
type Updater struct {
	a    *Agent
	cfg  UpdateConfig
	log  *slog.Logger
	dir  string
	boot bootloader.Bootloader

	mu      sync.Mutex // one check or install at a time; guards j
	j       *journal
	key     *ecdsa.PublicKey        // the pinned image signing key; nil before pinning
	pending []api.UpdateCheckTarget // offered but deferred or waiting
	trigger chan struct{}
	events  atomic.Pointer[[]rot.Event] // what measurements returns
	status  atomic.Pointer[UpdateStatus]
	// lastFetch says where the bytes of the latest download came from.
	lastFetch fetch.Stats
}

// UpdateStatus is the engine's state for `sphere agent status` and
// `sphere agent update-check`.
type UpdateStatus struct {
	Components   []api.UpdateCheckComponent `json:"components"`
	InProgress   *api.UpdateCheckTarget     `json:"in_progress,omitempty"`
	Step         string                     `json:"step,omitempty"`
	LastUpdate   string                     `json:"last_update,omitempty"`
	LastError    string                     `json:"last_error,omitempty"`
	LastUpdateAt time.Time                  `json:"last_update_at,omitzero"`
	DeferUntil   map[string]time.Time       `json:"defer_until,omitempty"`
}

// Status returns the engine's state as of its last journal write; it does
// not wait for an install in progress.
func (u *Updater) Status() UpdateStatus {
	if st := u.status.Load(); st != nil {
		return *st
	}
	return UpdateStatus{Components: []api.UpdateCheckComponent{}}
}

// components lists what the journal says runs.
func (u *Updater) components() []api.UpdateCheckComponent {
	out := []api.UpdateCheckComponent{}
	for _, c := range u.j.Components {
		out = append(out, api.UpdateCheckComponent{ComponentID: c.ComponentID, Kind: c.Kind, ImageID: c.ImageID,
			Version: c.Version, SecurityVersion: c.SecurityVersion})
	}
	sort.Slice(out, func(i, k int) bool { return out[i].ComponentID < out[k].ComponentID })
	return out
}

// ErrReboot means an install waits for a reboot: Reboot is nil, or it
// failed.
var ErrReboot = errors.New("update: a reboot is needed to go on")

// Files under UpdateConfig.Dir.
const (
	journalFile    = "journal.json"
	signingKeyFile = "signing-key.pem"
	tufDir         = "tuf"
	stagingDir     = "staging"
	appsDir        = "apps"
)

// NewUpdater makes the update engine of a and loads its journal. It adds
// the images it runs to what a measures.
func NewUpdater(a *Agent, cfg UpdateConfig) (*Updater, error) {
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(a.cfg.StateDir, "update")
	}
	if cfg.HealthWindow == 0 {
		cfg.HealthWindow = time.Minute
	}
	if cfg.CheckEvery == 0 {
		cfg.CheckEvery = 20 * time.Hour
	}
	if cfg.CheckJitter == 0 {
		cfg.CheckJitter = 4 * time.Hour
	}
	if cfg.MaxDeferOS == 0 {
		cfg.MaxDeferOS = 24 * time.Hour
	}
	if cfg.MaxDeferApp == 0 {
		cfg.MaxDeferApp = 168 * time.Hour
	}
	if cfg.Bootloader != nil && (cfg.Slots[bootloader.SlotA] == "" || cfg.Slots[bootloader.SlotB] == "") {
		return nil, errors.New("agent.NewUpdater: a bootloader needs the paths of slots a and b")
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, stagingDir), filepath.Join(cfg.Dir, appsDir), filepath.Join(cfg.Dir, tufDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("agent.NewUpdater: %w", err)
		}
	}
	j, err := readJournal(filepath.Join(cfg.Dir, journalFile))
	if err != nil {
		return nil, fmt.Errorf("agent.NewUpdater: %w", err)
	}
	u := &Updater{a: a, cfg: cfg, log: a.log.With("part", "update"), dir: cfg.Dir, boot: cfg.Bootloader, j: j, trigger: make(chan struct{}, 1)}
	if pemKey, err := os.ReadFile(filepath.Join(cfg.Dir, signingKeyFile)); err == nil {
		if u.key, err = image.ParsePublicKeyPEM(pemKey); err != nil {
			return nil, fmt.Errorf("agent.NewUpdater: pinned signing key: %w", err)
		}
	}
	u.refreshEvents()
	u.refreshStatus()
	a.setImages(u.measurements)
	return u, nil
}

// failpoint marks a step boundary.
func (u *Updater) failpoint(name string) {
	if u.cfg.Failpoint != nil {
		u.cfg.Failpoint(name)
	}
}

func (u *Updater) save() error {
	if err := writeJournal(filepath.Join(u.dir, journalFile), u.j); err != nil {
		return fmt.Errorf("update: journal: %w", err)
	}
	u.refreshEvents()
	u.refreshStatus()
	return nil
}

// CheckNow asks Run to check right away (`sphere agent update-check`, or
// the service's "check now" seen at attestation).
func (u *Updater) CheckNow() {
	select {
	case u.trigger <- struct{}{}:
	default:
	}
}

// Run starts the apps the journal says are installed, finishes or undoes
// an install a restart interrupted, then checks at start, on the schedule
// and on CheckNow, until ctx ends.
func (u *Updater) Run(ctx context.Context) error {
	u.StartApps()
	// Checks need the device certificate: wait for the first healthy
	// attestation (Agent.Run makes it).
	for u.a.Certificate() == nil {
		if err := sleep(ctx, time.Second); err != nil {
			return nil
		}
	}
	for {
		err := u.Check(ctx)
		if errors.Is(err, ErrReboot) {
			u.log.Warn("waiting for a reboot to go on with the update")
		} else if err != nil && ctx.Err() == nil {
			u.log.Warn("update check failed", "err", err)
		}
		wait := u.cfg.CheckEvery + backoff.Random(u.cfg.CheckJitter)
		if err != nil && !errors.Is(err, ErrReboot) {
			wait = min(wait, retryAfter(1)+time.Minute)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-u.trigger:
			t.Stop()
		}
	}
}

// StartApps hands the supervisor the installed apps, and the app on trial
// if a restart interrupted one (its health window starts again).
func (u *Updater) StartApps() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.setApps()
}

// Check reports to the service, learns what to run, and installs it: one
// image after another, OS first. It also carries on with an install that
// a restart interrupted. It returns ErrReboot when the device must reboot
// to go on (and Reboot was nil or failed).
func (u *Updater) Check(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.pin(ctx); err != nil && !errors.Is(err, errNoRepository) {
		return err
	}
	if t := u.j.Txn; t != nil && !unswitched(t) {
		if err := u.advance(ctx); err != nil {
			return err
		}
	}
	res, err := u.report(ctx)
	if err != nil {
		return err
	}
	u.failpoint("checked")
	if t := u.j.Txn; t != nil {
		// An install not switched yet goes on only while the service
		// still offers its image.
		if err := u.resumeIfOffered(ctx, t, res); err != nil {
			return err
		}
	}
	u.pending = u.pending[:0]
	did := false
	for _, t := range orderTargets(res.Targets) {
		if !u.wanted(t, res.DeploymentID) {
			continue
		}
		if until, err := u.deferredUntil(t); err != nil {
			return err
		} else if until.After(u.a.now()) {
			u.log.Info("install deferred by an app", "image", t.ImageID, "until", until)
			u.pending = append(u.pending, t)
			continue
		}
		did = true
		if err := u.pin(ctx); err != nil {
			return err
		}
		if err := u.begin(ctx, res.DeploymentID, t); err != nil {
			return err
		}
		if err := u.advance(ctx); err != nil {
			return err
		}
	}
	if did {
		// Tell the service at once how it went.
		_, err = u.report(ctx)
	}
	return err
}

// unswitched says whether t can still be dropped: nothing of it runs or
// is armed yet.
func unswitched(t *txn) bool {
	return t.Step == stepDownloading || t.Step == stepVerified || (t.Step == stepWritten && t.Target.Kind == "app")
}

// resumeIfOffered carries on with an interrupted install whose image the
// service still offers, and drops it otherwise (a newer deployment came
// meanwhile).
func (u *Updater) resumeIfOffered(ctx context.Context, t *txn, res api.UpdateCheckResult) error {
	for _, o := range res.Targets {
		if o.ImageID == t.Target.ImageID {
			return u.advance(ctx)
		}
	}
	u.log.Info("dropping an install the service no longer offers", "image", t.Target.ImageID, "step", t.Step)
	u.removeStaged(t)
	if t.Target.Kind == "app" && t.Step == stepWritten {
		u.removeAppSlot(t.Image)
	}
	u.j.Txn = nil
	u.j.LastUpdate, u.j.LastError = "", ""
	return u.save()
}

// orderTargets puts the OS first: apps are checked against it.
func orderTargets(ts []api.UpdateCheckTarget) []api.UpdateCheckTarget {
	out := append([]api.UpdateCheckTarget(nil), ts...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Kind == "os" && out[j].Kind != "os" })
	return out
}

// wanted says whether t should be installed now.
func (u *Updater) wanted(t api.UpdateCheckTarget, deployment string) bool {
	if cur, ok := u.j.Components[t.ComponentID]; ok && cur.ImageID == t.ImageID {
		return false
	}
	if dep, failed := u.j.Failed[t.ImageID]; failed && dep == deployment {
		return false
	}
	switch {
	case t.Kind == "os" && u.boot == nil:
		u.log.Info("skipping an OS image: no bootloader configured", "image", t.ImageID)
		return false
	case t.Kind == "app" && u.cfg.Apps == nil:
		u.log.Info("skipping an app image: no app supervisor", "image", t.ImageID)
		return false
	case t.Kind != "os" && t.Kind != "app":
		return false
	}
	return true
}

// report sends the update check.
func (u *Updater) report(ctx context.Context) (api.UpdateCheckResult, error) {
	rep := api.UpdateCheckReport{Components: u.components(), LastUpdate: u.j.LastUpdate, LastError: u.j.LastError,
		DeploymentID: u.j.LastDeploymentID, LastUpdateAt: u.j.LastUpdateAt}
	var res api.UpdateCheckResult
	if err := u.a.Post(ctx, "/device/v1/updates/check", rep, &res); err != nil {
		return res, fmt.Errorf("update check: %w", err)
	}
	for _, r := range res.Reasons {
		u.log.Debug("update check", "reason", r)
	}
	return res, nil
}

// errNoRepository: the tenant has no update metadata yet (it has never
// deployed anything), so there is no root to pin.
var errNoRepository = errors.New("update: the tenant has no TUF repository yet")

// pin fetches and keeps the tenant's TUF root and image signing key, once:
// after the first healthy attestation, over mutual TLS. Later roots come
// only through TUF's own chained root rotation.
func (u *Updater) pin(ctx context.Context) error {
	rootPath := filepath.Join(u.dir, tufDir, "root.json")
	if _, err := os.Stat(rootPath); err != nil {
		if u.a.Certificate() == nil {
			return errors.New("update: no device certificate yet; attest first")
		}
		root, err := u.a.getRaw(ctx, "/device/v1/tuf/root.json")
		var se *ServiceError
		if errors.As(err, &se) && se.Status == http.StatusNotFound {
			return errNoRepository
		}
		if err != nil {
			return fmt.Errorf("update: fetch the TUF root: %w", err)
		}
		if _, err := config.New("https://x/", root); err != nil {
			return fmt.Errorf("update: the service's TUF root: %w", err)
		}
		if err := tlsutil.WriteFileAtomic(rootPath, root, 0o600); err != nil {
			return err
		}
		u.log.Info("pinned the tenant's TUF root")
	}
	if u.key == nil {
		var k api.DeviceSigningKey
		if err := u.a.Get(ctx, "/device/v1/updates/signing-key", &k); err != nil {
			return fmt.Errorf("update: fetch the image signing key: %w", err)
		}
		pub, err := image.ParsePublicKeyPEM([]byte(k.PublicKey))
		if err != nil {
			return fmt.Errorf("update: the service's image signing key: %w", err)
		}
		if err := tlsutil.WriteFileAtomic(filepath.Join(u.dir, signingKeyFile), []byte(k.PublicKey), 0o600); err != nil {
			return err
		}
		u.key = pub
		u.log.Info("pinned the tenant's image signing key", "key_id", k.KeyID)
	}
	return nil
}

// tufUpdater is a go-tuf client over the device API, trusting the pinned
// root and the metadata it verified before.
func (u *Updater) tufUpdater() (*updater.Updater, error) {
	base := filepath.Join(u.dir, tufDir)
	trusted := filepath.Join(base, "metadata", "root.json")
	root, err := os.ReadFile(trusted)
	if errors.Is(err, os.ErrNotExist) {
		root, err = os.ReadFile(filepath.Join(base, "root.json"))
	}
	if err != nil {
		return nil, err
	}
	server := strings.TrimRight(u.a.cfg.Server, "/")
	cfg, err := config.New(server+"/device/v1/tuf/", root)
	if err != nil {
		return nil, err
	}
	cfg.RemoteTargetsURL = server + "/device/v1/targets/"
	cfg.LocalMetadataDir = filepath.Join(base, "metadata")
	cfg.LocalTargetsDir = filepath.Join(base, "targets")
	for _, d := range []string{cfg.LocalMetadataDir, cfg.LocalTargetsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := cfg.SetDefaultFetcherHTTPClient(u.a.Client()); err != nil {
		return nil, err
	}
	return updater.New(cfg)
}

// begin starts the install of t.
func (u *Updater) begin(ctx context.Context, deployment string, t api.UpdateCheckTarget) error {
	x := &txn{DeploymentID: deployment, Target: t, Step: stepDownloading}
	if t.Kind == "os" {
		s, err := u.boot.Inactive()
		if err != nil {
			return fmt.Errorf("update: the inactive OS slot: %w", err)
		}
		x.Slot = s
	}
	u.j.Txn = x
	u.j.LastUpdate, u.j.LastError, u.j.LastDeploymentID = "downloading", "", deployment
	u.log.Info("installing", "kind", t.Kind, "component", t.ComponentID, "image", t.ImageID, "version", t.Version)
	if err := u.save(); err != nil {
		return err
	}
	u.failpoint("begun")
	return nil
}

// advance runs the install in progress step by step until it is committed
// or rolled back, fails, or waits for a reboot. A network error leaves the
// transaction where it is for the next check.
func (u *Updater) advance(ctx context.Context) error {
	for u.j.Txn != nil {
		t := u.j.Txn
		var err error
		switch t.Step {
		case stepDownloading:
			err = u.download(ctx, t)
		case stepVerified:
			err = u.write(t)
		case stepWritten, stepArmed:
			if t.Target.Kind == "os" {
				err = u.switchOS(ctx, t)
			} else {
				err = u.switchApp(t)
			}
		case stepTrial:
			err = u.trialApp(ctx, t)
		case stepCommitting:
			err = u.commit(ctx, t)
		case stepRollingBack:
			err = u.rollback(ctx, t)
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			if err := u.fail(t, perm.Error()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// permanentError is an install failure that retrying cannot fix.
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

func permanent(format string, args ...any) error {
	return &permanentError{msg: fmt.Sprintf(format, args...)}
}

func (u *Updater) staged(t *txn) string {
	return filepath.Join(u.dir, stagingDir, t.Target.ImageID+".pkg")
}

// download fetches the package (delta-assembled from the chunks the device
// has), checks it against the TUF targets and verifies it.
func (u *Updater) download(ctx context.Context, t *txn) error {
	up, err := u.tufUpdater()
	if err != nil {
		return fmt.Errorf("update: TUF client: %w", err)
	}
	if err := up.Refresh(); err != nil {
		return fmt.Errorf("update: TUF refresh: %w", err)
	}
	info, err := up.GetTargetInfo(t.Target.Path)
	if err != nil {
		return permanent("the update metadata does not list %s: %v", t.Target.Path, err)
	}
	var meta api.UpdateCheckTarget
	if info.Custom == nil || json.Unmarshal(*info.Custom, &meta) != nil || meta.ImageID != t.Target.ImageID || meta.ComponentID != t.Target.ComponentID || meta.Kind != t.Target.Kind {
		return permanent("the update metadata of %s does not describe image %s", t.Target.Path, t.Target.ImageID)
	}
	t.Target = meta // what TUF signed wins over the check's answer
	sha := hex.EncodeToString(info.Hashes["sha256"])
	if floor := u.floor(t.Target); meta.SecurityVersion < floor {
		return permanent("refused image %s: security version %d is below %d, which this device has run (rollback attack?)", meta.ImageID, meta.SecurityVersion, floor)
	}
	dir, file := path.Split(t.Target.Path)
	url := strings.TrimRight(u.a.cfg.Server, "/") + "/device/v1/targets/" + dir + sha + "." + file
	src, closeSrc := u.chunkSource(t)
	defer closeSrc()
	st, err := fetch.Assemble(ctx, u.a.Client(), url, u.staged(t), fetch.Want{Size: info.Length, SHA256: sha}, src,
		fetch.Options{BytesPerSecond: u.cfg.BytesPerSecond, Retries: 5, Log: u.log})
	u.lastFetch = st
	u.log.Info("downloaded", "image", meta.ImageID, "bytes", st.BytesDownloaded, "reused", st.BytesReused, "resumed", st.BytesResumed, "of", info.Length)
	if errors.Is(err, fetch.ErrDigest) {
		return permanent("download of %s: %v", meta.ImageID, err)
	}
	if err != nil {
		return fmt.Errorf("update: download: %w", err)
	}
	u.failpoint("downloaded")
	h, err := u.verify(t)
	if err != nil {
		return err
	}
	t.Image = installed{Kind: t.Target.Kind, ComponentID: h.Metadata.ComponentID, ImageID: h.ImageID(), Name: h.Metadata.Name,
		Version: h.Metadata.Version, SecurityVersion: h.Metadata.SecurityVersion, PayloadSize: h.Metadata.PayloadSize, Slot: t.Slot}
	t.Step = stepVerified
	if err := u.save(); err != nil {
		return err
	}
	u.failpoint("verified")
	return nil
}

// floor is the lowest security version t's component may install.
func (u *Updater) floor(t api.UpdateCheckTarget) uint32 {
	return u.j.Floors[t.ComponentID]
}

// verify checks the staged package: the tenant's signature, that it is
// the image TUF named, and its security version against the floor and,
// for the OS, the root of trust's anti-rollback counter.
func (u *Updater) verify(t *txn) (*image.Header, error) {
	f, err := os.Open(u.staged(t))
	if err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	defer f.Close()
	h, err := image.ReadHeader(f)
	if err != nil {
		return nil, permanent("package %s: %v", t.Target.ImageID, err)
	}
	if err := h.VerifySignature(u.key); err != nil {
		return nil, permanent("package %s is not signed with the tenant's image signing key: %v", t.Target.ImageID, err)
	}
	md := h.Metadata
	switch {
	case h.ImageID() != t.Target.ImageID:
		return nil, permanent("package is image %s, not %s", h.ImageID(), t.Target.ImageID)
	case string(md.Kind) != t.Target.Kind || md.ComponentID != t.Target.ComponentID:
		return nil, permanent("package is a %s of component %s, not a %s of %s", md.Kind, md.ComponentID, t.Target.Kind, t.Target.ComponentID)
	case md.SecurityVersion < u.floor(t.Target):
		return nil, permanent("refused image %s: security version %d is below %d, which this device has run (rollback attack?)", h.ImageID(), md.SecurityVersion, u.floor(t.Target))
	}
	if md.Kind == image.KindOS {
		c, err := u.a.cfg.RoT.Counter()
		if err != nil {
			return nil, fmt.Errorf("update: anti-rollback counter: %w", err)
		}
		if uint64(md.SecurityVersion) < c {
			return nil, permanent("refused OS image %s: security version %d is below the anti-rollback counter %d (rollback attack?)", h.ImageID(), md.SecurityVersion, c)
		}
	}
	return h, nil
}

// payloadOffset is where the payload of the staged package starts: nothing
// follows the payload.
func payloadOffset(f *os.File, payloadSize int64) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size() - payloadSize, nil
}

// removeStaged removes the download of t, complete or partial.
func (u *Updater) removeStaged(t *txn) {
	os.Remove(u.staged(t))
	os.Remove(u.staged(t) + ".part")
	os.Remove(u.staged(t) + ".journal")
}

// fail ends the install as failed (before a switch) or starts the rollback
// (after it).
func (u *Updater) fail(t *txn, reason string) error {
	u.log.Warn("install failed", "image", t.Target.ImageID, "step", t.Step, "reason", reason)
	switch t.Step {
	case stepWritten, stepArmed, stepTrial, stepCommitting:
		t.Step, t.Reason = stepRollingBack, reason
		return u.save()
	}
	u.removeStaged(t)
	u.finish(t, "failed", reason)
	return u.save()
}

// finish ends the transaction with an outcome for the next report.
func (u *Updater) finish(t *txn, outcome, reason string) {
	if outcome != "installed" {
		u.j.Failed[t.Target.ImageID] = t.DeploymentID
		u.recordFailure(t, outcome, reason)
	}
	u.j.Txn = nil
	delete(u.j.Offered, t.Target.ImageID)
	u.j.LastUpdate, u.j.LastError, u.j.LastDeploymentID, u.j.LastUpdateAt = outcome, reason, t.DeploymentID, u.a.now().UTC()
	if len(u.j.Failed) > 512 {
		u.j.Failed = map[string]string{t.Target.ImageID: t.DeploymentID}
	}
}

// recordFailure puts a failed install or a rollback in the failure-report
// queue, on disk before the journal says the install is over (a power cut
// between the two records it twice rather than never).
func (u *Updater) recordFailure(t *txn, outcome, reason string) {
	cat := sphere.FailureUpdateFailed
	if outcome == "rolled_back" {
		cat = sphere.FailureUpdateRolledBack
	}
	class := sphere.FailureClassOS
	if t.Target.Kind == "app" {
		class = sphere.FailureClassApp
	}
	u.a.RecordFailure(sphere.FailureEvent{Class: class, Category: cat, Description: reason,
		ComponentID: t.Target.ComponentID, ImageID: t.Target.ImageID, Version: t.Target.Version})
}

// healthy is the common part of the health check after a switch: the
// agent is up (this code runs), the apps stay up for the health window,
// and a healthy attestation of the new measurements.
func (u *Updater) healthy(ctx context.Context) error {
	if u.cfg.Apps != nil {
		deadline := u.a.now().Add(2*u.cfg.HealthWindow + 5*time.Second)
		for _, app := range u.runningApps() {
			for {
				ok, reason := u.cfg.Apps.Healthy(app.ComponentID, app.ImageID, u.cfg.HealthWindow)
				if ok {
					break
				}
				if u.exited(app) || !u.a.now().Before(deadline) {
					return permanent("health check: app %s (%s): %s", app.Name, app.ImageID, reason)
				}
				if err := sleep(ctx, min(time.Second, u.cfg.HealthWindow/4+10*time.Millisecond)); err != nil {
					return err
				}
			}
		}
	}
	if err := u.a.Measure(); err != nil {
		return fmt.Errorf("update: measure: %w", err)
	}
	var err error
	for i := range 3 {
		if _, err = u.a.Attest(ctx); err == nil {
			return nil
		}
		var ae *AttestError
		if errors.As(err, &ae) {
			return permanent("health check: attestation of the new measurements: %s: %s", ae.Result.Result, ae.Result.Reason+" "+ae.Result.Detail)
		}
		if err := sleep(ctx, time.Duration(i+1)*time.Second); err != nil {
			return err
		}
	}
	return permanent("health check: attestation of the new measurements did not complete: %v", err)
}

// exited says whether an app has exited since the supervisor started its
// image: it is then not healthy, whatever happens next.
func (u *Updater) exited(app installed) bool {
	for _, st := range u.cfg.Apps.Status() {
		if st.App.ComponentID == app.ComponentID && st.App.ImageID == app.ImageID {
			return st.Restarts > 0 || st.LastExit != ""
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// commit makes the install permanent: the bootloader commits the OS slot,
// the anti-rollback counter goes up, the previous app version goes.
func (u *Updater) commit(ctx context.Context, t *txn) error {
	img := t.Image
	if img.Kind == "os" {
		if err := u.boot.Commit(); err != nil {
			return fmt.Errorf("update: commit the OS slot: %w", err)
		}
		u.failpoint("bootloader-committed")
		if c, err := u.a.cfg.RoT.Counter(); err != nil {
			return fmt.Errorf("update: anti-rollback counter: %w", err)
		} else if uint64(img.SecurityVersion) > c {
			if err := u.a.cfg.RoT.AdvanceCounter(uint64(img.SecurityVersion)); err != nil {
				return fmt.Errorf("update: raise the anti-rollback counter: %w", err)
			}
		}
		u.failpoint("counter-raised")
	}
	prev, hadPrev := u.j.Components[img.ComponentID]
	u.j.Components[img.ComponentID] = img
	u.j.Floors[img.ComponentID] = max(u.j.Floors[img.ComponentID], img.SecurityVersion)
	u.finish(t, "installed", "")
	if err := u.save(); err != nil {
		return err
	}
	u.log.Info("update committed", "kind", img.Kind, "image", img.ImageID, "version", img.Version)
	os.Remove(u.staged(t))
	if img.Kind == "app" && hadPrev && prev.ImageID != img.ImageID {
		u.removeAppSlot(prev)
	}
	return nil
}

// rollback undoes a switched install and records why.
func (u *Updater) rollback(ctx context.Context, t *txn) error {
	if t.Target.Kind == "os" {
		st, err := u.boot.State()
		if err != nil {
			return fmt.Errorf("update: bootloader state: %w", err)
		}
		if st.Booted == t.Slot || st.Next == t.Slot {
			if err := u.boot.Rollback(); err != nil && !errors.Is(err, bootloader.ErrNoTrial) {
				return fmt.Errorf("update: roll back the OS slot: %w", err)
			}
			u.failpoint("bootloader-rolled-back")
			if st.Booted == t.Slot {
				return u.reboot()
			}
		}
	} else {
		u.removeAppSlot(t.Image)
	}
	u.finish(t, "rolled_back", t.Reason)
	if err := u.save(); err != nil {
		return err
	}
	u.log.Warn("update rolled back", "image", t.Target.ImageID, "reason", t.Reason)
	u.setApps()
	// The measurements go back to what runs; attest them (best effort).
	if err := u.a.Measure(); err == nil {
		u.a.Attest(ctx)
	}
	return nil
}

// reboot asks for the restart that goes on with an OS install.
func (u *Updater) reboot() error {
	u.failpoint("reboot")
	if u.cfg.Reboot == nil {
		return ErrReboot
	}
	u.log.Warn("rebooting for the update")
	if err := u.cfg.Reboot(); err != nil {
		return fmt.Errorf("%w: %v", ErrReboot, err)
	}
	return ErrReboot
}

// measurements are the images the device runs, for Agent.Measurements.
func (u *Updater) measurements() []rot.Event {
	if ev := u.events.Load(); ev != nil {
		return *ev
	}
	return nil
}

// refreshStatus recomputes what Status returns. The caller holds u.mu.
func (u *Updater) refreshStatus() {
	st := UpdateStatus{Components: u.components(), LastUpdate: u.j.LastUpdate, LastError: u.j.LastError,
		LastUpdateAt: u.j.LastUpdateAt, DeferUntil: map[string]time.Time{}}
	for k, v := range u.j.DeferUntil {
		if v.After(u.a.now()) {
			st.DeferUntil[k] = v
		}
	}
	if t := u.j.Txn; t != nil {
		target := t.Target
		st.InProgress, st.Step = &target, t.Step
	}
	u.status.Store(&st)
}

// refreshEvents recomputes what measurements returns: the OS of the booted
// slot and the apps the supervisor runs. The caller holds u.mu.
func (u *Updater) refreshEvents() {
	var out []rot.Event
	var booted bootloader.Slot
	if u.boot != nil {
		booted, _ = u.boot.Active()
	}
	t := u.j.Txn
	if t != nil && t.Target.Kind == "os" && t.Slot == booted && t.Step != stepDownloading && t.Step != stepVerified {
		out = append(out, rot.Event{Type: attest.EventOSImage, Name: t.Image.Name, Digest: t.Image.ImageID})
	} else {
		for _, c := range u.j.Components {
			if c.Kind == "os" && c.Slot == booted {
				out = append(out, rot.Event{Type: attest.EventOSImage, Name: c.Name, Digest: c.ImageID})
			}
		}
	}
	for _, app := range u.runningApps() {
		out = append(out, rot.Event{Type: attest.EventAppImage, Name: app.Name, Digest: app.ImageID})
	}
	u.events.Store(&out)
}
