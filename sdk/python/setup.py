# The cffi extension (leveros._lever) is declared here: setuptools takes
# `cffi_modules` only through setup(). Everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["leveros_build.py:ffibuilder"])
