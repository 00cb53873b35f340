"""The units of ``gestor setup`` from the page (docs/site/en/setup.md, "From the page"): the path
unit watches the proposal the page writes and starts the root oneshot that applies it; both
verify cleanly; the web unit allows exactly what the setup finders need (AF_NETLINK to list this
Pi's networks, mDNS's group and GoodWe's broadcast) and nothing more; install.sh installs and
enables the path unit. Checked as tests/test_units.py checks the daemons'."""
import shutil
import subprocess

from tests.conftest import REPO
from tests.test_units import _service, units_pointing_at_this_venv

SETUP_UNITS = ["gestor-setup-apply.path", "gestor-setup-apply.service"]


def _section(name: str, section: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    current = None
    for line in (REPO / "daemons" / name).read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif "=" in line and not line.startswith("#") and current == section:
            k, v = line.split("=", 1)
            values.setdefault(k, []).append(v)
    return values


def test_the_setup_units_verify_cleanly(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (./install.sh --test installs systemd)"
    files = units_pointing_at_this_venv(tmp_path, SETUP_UNITS)
    p = subprocess.run(["systemd-analyze", "verify", *map(str, files)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_the_path_unit_starts_the_root_oneshot_on_the_pages_proposal():
    path = _section("gestor-setup-apply.path", "Path")
    assert path["PathExists"] == ["/var/lib/gestor/setup/proposal.yaml"]
    assert path["Unit"] == ["gestor-setup-apply.service"]
    assert _section("gestor-setup-apply.path", "Install")["WantedBy"] == ["paths.target"]
    s = _service("gestor-setup-apply.service")
    assert s["Type"] == ["oneshot"] and "User" not in s          # root: it writes /etc/gestor
    argv = s["ExecStart"][0].split()
    assert argv[1:] == ["setup", "--apply-proposal", "/var/lib/gestor/setup/proposal.yaml",
                        "--settings", "/etc/gestor/settings.yaml"]
    assert s["ProtectSystem"] == ["strict"] and s["ProtectHome"] == ["yes"] and s["PrivateTmp"] == ["yes"]
    assert s["ReadWritePaths"][0].split() == ["/etc/gestor", "/var/lib/gestor/setup", "/opt/gestor"]


def test_the_web_unit_allows_exactly_what_the_setup_finders_need():
    s = _service("gestor-web.service")
    assert s["RestrictAddressFamilies"][0].split() == ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]
    assert s["CapabilityBoundingSet"] == [""] and s["User"] == ["gestor"]   # netlink reads only
    allowed = s["IPAddressAllow"][0].split()
    assert "224.0.0.251" in allowed and "255.255.255.255" in allowed
    assert not [a for a in allowed if a.startswith(("224.0.0.0", "239.", "0.0.0.0"))]
    assert s["ProtectSystem"] == ["strict"] and "/etc/gestor" not in " ".join(s.get("ReadWritePaths", []))


def test_install_sh_installs_and_enables_the_path_unit():
    text = (REPO / "install.sh").read_text()
    assert "SETUP_UNITS=(gestor-setup-apply.path gestor-setup-apply.service)" in text
    assert '"${SETUP_UNITS[@]/#/$HERE/daemons/}" /etc/systemd/system/' in text
    assert "systemctl enable --now gestor-setup-apply.path" in text
    assert "disable --now gestor-setup-apply.path" in text


def test_the_apply_unit_is_root_with_three_capabilities_and_an_exposure_below_4(tmp_path, capsys):
    s = _service("gestor-setup-apply.service")
    assert s["CapabilityBoundingSet"][0].split() == ["CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"]
    assert s["NoNewPrivileges"] == ["yes"] and s["SystemCallFilter"] == ["@system-service"]   # @chown kept
    (f,) = units_pointing_at_this_venv(tmp_path, ["gestor-setup-apply.service"])
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(f)],
                       capture_output=True, text=True)
    line = [x for x in p.stdout.splitlines() if "Overall exposure level" in x]
    score = float(line[0].split("level for")[1].split(":")[1].split()[0])
    with capsys.disabled():
        print(f"\n{f.name}: systemd-analyze security exposure {score}")
    assert score < 4.0
