"""Load the Hypothesis profile: `ci` under CI, else BNREF_PROFILE, else `dev`."""

from properties.profiles import load_profile

load_profile()
