"""The reader's language outside the page's requests: a reason code (:mod:`gestor.core.reasons`)
as a sentence in Spanish, Catalan or English (:mod:`.reasons`), numbers as the language writes
them, and the gettext catalogs they come from.

The catalogs are the page's (``gestor/web/translations/{es,ca}/LC_MESSAGES/messages.mo``, one
set for every reader: the page, ``gestor status``, Home Assistant), read here with the standard
library's :mod:`gettext` (plurals by the catalog's ``Plural-Forms``, genders by ``pgettext``
contexts ``masculine``/``feminine``), so the daemons need nothing beyond the standard library.
Layer 4 (beside the tariff): it imports the core's registry and the foundation only, and the
runtime (``gestor status``, MQTT), the page and the commands import it."""
from __future__ import annotations

import gettext
import math
import os
from functools import lru_cache
from pathlib import Path

LANGS = ("es", "ca", "en")                # the catalogs (English is the source)
DEFAULT = "en"
GENDERS = ("m", "f")                     # a load's grammatical gender (its display_gender)
CATALOGS = Path(__file__).resolve().parents[1] / "web" / "translations"


def check_lang(lang: str, key: str = "language") -> str:
    """``lang`` when it is one of :data:`LANGS`, else ValueError naming ``key``, the value and
    what is allowed."""
    if lang not in LANGS:
        raise ValueError(f"{key}: must be one of {', '.join(LANGS)} (got {lang!r})")
    return lang


@lru_cache(maxsize=len(LANGS))
def catalog(lang: str) -> gettext.NullTranslations:
    """The compiled catalog of ``lang`` (English: the source texts themselves). ValueError for
    another language; OSError when a catalog is missing from the installation."""
    check_lang(lang)
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation("messages", str(CATALOGS), languages=[lang])


def from_environment(environ: dict[str, str] | None = None) -> str:
    """The language of the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``, ``LANGUAGE``, the
    first one set, as gettext reads them): ``es_ES.UTF-8`` → es, ``ca_ES`` → ca; English for
    another language or none (``C``, ``POSIX``)."""
    env = os.environ if environ is None else environ
    for key in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(key) or ""
        for part in value.split(":"):
            code = part.split(".")[0].split("@")[0].split("_")[0].lower()
            if code in LANGS:
                return code
            if code:
                break
    return DEFAULT


def number(value: float, lang: str, digits: int = 0, signed: bool = False) -> str:
    """``value`` as ``lang`` writes it, always grouped: ``1.250,5`` (es, ca), ``1,250.5`` (en),
    as the page does; ``signed``: a + before positives. Never "-0" (a rounded zero is 0)."""
    if not math.isfinite(value):
        return str(value)
    value = round(value, digits)
    if value == 0:
        value = 0.0
    text = f"{value:{'+' if signed and value != 0 else ''},.{digits}f}"
    if lang in ("es", "ca"):
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text
