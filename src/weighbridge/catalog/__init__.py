"""What a model is and whether its license allows a deployment: license records and verdicts."""

from .licenses import License, LicenseBook, Verdict, load_licenses
from .profile import Profile, load_profile

__all__ = ["License", "LicenseBook", "Profile", "Verdict", "load_licenses", "load_profile"]
