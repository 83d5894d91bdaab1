# The importer's Flex Template image, which is also the workers' SDK container: launch a job with
# sdk_container_image=<this image> (scripts/dataflow.sh template-run does; template_main.py refuses a
# job without it) and the launcher and the workers run one Beam version with one set of pinned
# dependencies and the package, all installed once, here. A worker installs nothing when it starts,
# so it needs no package index (private networks and VPC-SC perimeters have none).
# Build with Cloud Build (scripts/dataflow.sh template-build); see docs/dataflow.md.

# Only the Flex Template launcher binary is taken from Google's launcher image. For reproducible
# builds, pin it by digest: …/python311-template-launcher-base@sha256:<digest>.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:latest AS template_launcher

# Beam's own SDK image at the version pinned in requirements.txt (tests/test_template.py checks that
# they agree): its /opt/apache/beam/boot makes this image usable as the workers' container.
FROM apache/beam_python3.11_sdk:2.77.0

COPY --from=template_launcher /opt/google/dataflow/python_template_launcher \
     /opt/google/dataflow/python_template_launcher

ARG WORKDIR=/template
WORKDIR ${WORKDIR}

# Dependencies first: this layer changes only when the pins do. The build has an index; with the
# pins comes the build backend of our own package (setuptools >= 70.1 builds wheels by itself, no
# `wheel` package), so that the package below builds without fetching anything.
COPY requirements.txt requirements.lock ./
RUN pip install --no-cache-dir -r requirements.txt -c requirements.lock setuptools==84.2.1

# Then the package, built with the setuptools above (no isolated build environment, whose build tools
# pip would fetch from an index) and installed without an index or dependencies (all installed above).
# tests/test_worker_image.py runs this line in a virtualenv that has no index.
COPY setup.py MANIFEST.in pyproject.toml README.md rlvt_own_packages.py template_main.py ./
COPY pipeline pipeline/
COPY schemas schemas/
COPY transforms transforms/
RUN pip install --no-cache-dir --no-index --no-deps --no-build-isolation .
RUN pip check

# Fail the build if a package of the image ships `pipeline`, `schemas` or `transforms` too (it would
# share a folder with ours), checked on the installed copy, from outside /template.
RUN cd / && python -m rlvt_own_packages

ENV FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/template_main.py"
# Only the launcher's entry point, as in Google's pipeline_with_dependencies sample for packages
# already in the image. No FLEX_TEMPLATE_PYTHON_SETUP_FILE, _REQUIREMENTS_FILE or _EXTRA_PACKAGES:
# the launcher would stage them and every worker would pip-install them at start-up, fetching build
# tools and packages from an index it may not reach (template_main.py refuses the flags they become).

ENTRYPOINT ["/opt/apache/beam/boot"]
