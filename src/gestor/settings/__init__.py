"""settings.yaml → validated settings (pydantic), before anything starts.

Every error names the file, the key, what is allowed and the value found, e.g.
``settings.yaml: loads[1].power_w: must be > 0 (got -700)``. Driver sections (``meter``,
``loads[i].relay``) are validated by the model their driver registered, selected by ``driver:``.

The package is split along its seams (issue 33), each module importing only the ones before it:
:mod:`.models` (the sections, :class:`Settings`, the limits, :class:`SettingsError`),
:mod:`.messages` (one line per pydantic error, secrets masked), :mod:`.checks`
(:func:`parse_settings`: the driver sections and the checks across sections) and :mod:`.reading`
(the YAML reader, ``!secret``, :func:`load_settings`, :func:`dump_settings`). Import every name
from ``gestor.settings``: it re-exports them all. Layer 3 (settings): it may import the drivers,
the core and the foundation (``gestor.clock``, ``gestor.files``), never the tariff, the forecast,
the runtime, the simulator, the web page or the programs.
"""
# re-exports: gestor.settings is the one name importers use
from gestor.settings.models import (BillingSettings, DriverSection, FETCHED_SOURCES, listen_address,
                                    LoadSettings, ManagingSettings, MAX_DEPTH, MAX_DEVICE_TIMEOUT_S,
                                    MAX_INTERVAL_S, MAX_PEM_BYTES, MAX_PRICES_BYTES,
                                    MAX_SETTINGS_BYTES, MAX_WH, MonitoringSettings, MqttSettings,
                                    PathsSettings, PolicySettings, PricesSettings, SECRETS_FILE,
                                    SetpointDeviceSettings, Settings, SettingsError, StoreSettings,
                                    SUDO_HINT, TariffSettings, VirtualMeterSettings, WATCHDOG_S,
                                    WebSettings)  # noqa: F401
from gestor.settings.messages import (field_model, is_numeric_field, MASK, numbers_not_bools, SecretValue)  # noqa: F401
from gestor.settings.checks import (parse_settings, policy_needs_thresholds, RELATIVE_FILES)  # noqa: F401
from gestor.settings.reading import (check_files, clear_text_secrets, dump_settings, load_settings,
                                     plain_secrets, read_file, read_raw, read_yaml, SECRET_KEYS,
                                     SecretRef, secrets_path)  # noqa: F401
