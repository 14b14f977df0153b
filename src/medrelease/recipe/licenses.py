"""The license ids the Hugging Face Hub accepts in a card's `license:` metadata.

The Hub refuses a push whose README names another id, so a recipe is checked against this list
when it is loaded, not when publish reaches the Hub. Source: the Hub's documentation,
https://huggingface.co/docs/hub/repositories-licenses (the table between its "region licenses"
markers). `other` names a license outside the list and then needs `license_name` and
`license_link` (the Hub shows them on the model page).
"""

from __future__ import annotations

HUB_LICENSES = frozenset(
    {
        "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m",
        "bigscience-bloom-rail-1.0", "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0",
        "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0",
        "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
        "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
        "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0",
        "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1", "agpl-3.0", "gfdl", "gpl", "gpl-2.0",
        "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "lppl-1.3c", "ms-pl", "mpl-2.0",
        "odc-by", "odbl", "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa", "unlicense",
        "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "llama2", "llama3", "llama3.1",
        "llama3.2", "llama3.3", "gemma", "unknown", "other",
    }
)  # fmt: skip

LIST_URL = "https://huggingface.co/docs/hub/repositories-licenses"


def unknown_license(license_id: str) -> str | None:
    """Why `license_id` is not a Hub license id (with the closest one), or None when it is."""
    from medrelease.core.suggest import did_you_mean

    if license_id in HUB_LICENSES:
        return None
    lower = license_id.strip().lower()
    if lower in HUB_LICENSES:
        return f"{license_id!r} is not a Hub license id: ids are lower case, e.g. {lower!r}"
    return f"{license_id!r} is not a Hub license id{did_you_mean(license_id, HUB_LICENSES)}"
