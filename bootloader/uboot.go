package bootloader

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// UBoot keeps the A/B state in the U-Boot environment, read with
// fw_printenv and written with fw_setenv, in the standard bootcount scheme
// (CONFIG_BOOTCOUNT_LIMIT, CONFIG_BOOTCOUNT_ENV): upgrade_available,
// bootcount, bootlimit and altbootcmd, plus a slot variable ("sphere_slot")
// that bootcmd boots. docs/bootloader.md has the U-Boot side.
//
// Every change is one fw_setenv -s run, so the tool writes the whole
// environment once (to the other copy, when the configuration has a
// redundant environment), and the result is read back and checked.
type UBoot struct {
	machine
}

type ubootStore struct {
	printenv, setenv tool
	config           string // fw_env.config
	slotVar          string
	cmdline          string
	tempDir          string
	log              *slog.Logger
}

// NewUBoot returns the uboot backend. It fails at once when fw_printenv,
// fw_setenv or the fw_env.config file is missing; it does not read the
// environment yet.
func NewUBoot(cfg Config) (*UBoot, error) {
	limit, err := cfg.bootLimit(1 << 20)
	if err != nil {
		return nil, err
	}
	slotVar, err := cfg.slotVar()
	if err != nil {
		return nil, err
	}
	printenv, err := lookTool(cfg.FwPrintenv, "fw_printenv", ubootToolHint)
	if err != nil {
		return nil, err
	}
	setenv, err := lookTool(cfg.FwSetenv, "fw_setenv", ubootToolHint)
	if err != nil {
		return nil, err
	}
	config := orDefault(cfg.FwEnvConfig, DefaultFwEnvConfig)
	if _, err := os.Stat(config); err != nil {
		return nil, fmt.Errorf("bootloader: fw_env config: %w (it names the device, offset and size of the U-Boot environment; see docs/bootloader.md)", err)
	}
	s := &ubootStore{
		printenv: tool{path: printenv, hint: ubootToolHint, timeout: cfg.timeout()},
		setenv:   tool{path: setenv, hint: ubootToolHint, timeout: cfg.timeout()},
		config:   config,
		slotVar:  slotVar,
		cmdline:  orDefault(cfg.Cmdline, DefaultCmdline),
		tempDir:  cfg.TempDir,
		log:      cfg.logger(),
	}
	return &UBoot{machine{st: s, bootLimit: limit}}, nil
}

func (s *ubootStore) names() []string {
	return []string{s.slotVar, varUpgrade, varBootCount, varBootLimit}
}

func (s *ubootStore) load() (vars, Slot, error) {
	v, err := s.loadVars()
	if err != nil {
		return vars{}, "", err
	}
	booted, err := bootedFromCmdline(s.cmdline)
	if err != nil {
		return vars{}, "", err
	}
	return v, booted, nil
}

func (s *ubootStore) loadVars() (vars, error) {
	args := append([]string{"-c", s.config}, s.names()...)
	out, errOut, err := s.printenv.run(args...)
	env, err := parsePrintenv(out, errOut, err, s.names())
	if err != nil {
		return vars{}, fmt.Errorf("fw_printenv -c %s: %w", s.config, err)
	}
	if len(errOut) > 0 && !notDefinedOnly(errOut, s.names()) {
		s.log.Warn("fw_printenv", "config", s.config, "stderr", oneLine(errOut))
	}
	return parseVars(env, s.slotVar)
}

// notDefined is how U-Boot's own fw_printenv reports a variable that is not
// set (with exit status 1); libubootenv's prints "name=" instead.
var notDefined = regexp.MustCompile(`^## Error: "([^"]*)" not defined$`)

func notDefinedOnly(stderr []byte, names []string) bool {
	lines := strings.Split(strings.TrimRight(string(stderr), "\n"), "\n")
	for _, l := range lines {
		m := notDefined.FindStringSubmatch(l)
		if m == nil || !contains(names, m[1]) {
			return false
		}
	}
	return true
}

// parsePrintenv turns the outcome of fw_printenv NAME... into the variables
// that are set. Both implementations are understood: libubootenv (Debian's
// libubootenv-tool) prints "name=" for an unset variable and exits 0;
// U-Boot's own tools print nothing for it, complain on stderr and exit 1.
// Any other failure, or a line for a variable not asked for, is an error
// wrapping ErrEnvironment.
func parsePrintenv(stdout, stderr []byte, runErr error, names []string) (map[string]string, error) {
	if runErr != nil {
		var exit *exec.ExitError
		if !errors.As(runErr, &exit) {
			return nil, runErr
		}
		if len(stderr) == 0 || !notDefinedOnly(stderr, names) {
			return nil, fmt.Errorf("%w: %v: %s", ErrEnvironment, runErr, oneLine(stderr))
		}
	}
	env, err := parseEnvLines(stdout)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnvironment, err)
	}
	for name := range env {
		if !contains(names, name) {
			return nil, fmt.Errorf("%w: printed variable %q, which was not asked for", ErrEnvironment, name)
		}
	}
	return env, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *ubootStore) save(v vars, _ Slot) error {
	script, err := os.CreateTemp(s.tempDir, "sphere-fw_setenv-*.txt")
	if err != nil {
		return fmt.Errorf("fw_setenv script: %w", err)
	}
	defer os.Remove(script.Name())
	// name=value is the script syntax libubootenv reads (it skips any other
	// line without a word) and one U-Boot's own fw_setenv accepts as well;
	// the read-back below catches a tool that took neither.
	_, err = script.WriteString(strings.Join(envLines(v, s.slotVar), "\n") + "\n")
	if cerr := script.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fw_setenv script: %w", err)
	}
	_, errOut, err := s.setenv.run("-c", s.config, "-s", script.Name())
	if err != nil {
		return fmt.Errorf("fw_setenv -c %s -s %s: %w: %s", s.config, script.Name(), err, oneLine(errOut))
	}
	if len(errOut) > 0 {
		s.log.Warn("fw_setenv", "config", s.config, "stderr", oneLine(errOut))
	}
	got, err := s.loadVars()
	if err != nil {
		return fmt.Errorf("reading back after fw_setenv: %w", err)
	}
	if got != v {
		return fmt.Errorf("fw_setenv -c %s -s exited 0, but the environment reads %s, not %s: does this fw_setenv read name=value script lines?",
			s.config, strings.Join(envLines(got, s.slotVar), " "), strings.Join(envLines(v, s.slotVar), " "))
	}
	return nil
}
