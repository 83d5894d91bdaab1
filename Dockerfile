# The importer's Flex Template image, which is also the workers' SDK container: launch a job with
# sdk_container_image=<this image> (scripts/dataflow.sh template-run does) and the launcher and the
# workers run one Beam version with one set of pinned dependencies, installed once at build time.
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

# Dependencies first: this layer changes only when the pins do.
COPY requirements.txt requirements.lock ./
RUN pip install --no-cache-dir -r requirements.txt -c requirements.lock

# Then the package. Its source stays in /template: the launcher builds the sdist of
# FLEX_TEMPLATE_PYTHON_SETUP_FILE from there and stages it for the workers.
COPY setup.py MANIFEST.in pyproject.toml README.md rlvt_own_packages.py template_main.py ./
COPY pipeline pipeline/
COPY schemas schemas/
COPY transforms transforms/
RUN pip install --no-cache-dir --no-deps . && pip check

# Fail the build if a package of the image ships `pipeline`, `schemas` or `transforms` too (it would
# share a folder with ours), checked on the installed copy, from outside /template.
RUN cd / && python -m rlvt_own_packages

ENV FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/template_main.py"
ENV FLEX_TEMPLATE_PYTHON_SETUP_FILE="${WORKDIR}/setup.py"
# No FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE: the pins are installed above; staging them again would
# make the launcher download every package at each launch.

ENTRYPOINT ["/opt/apache/beam/boot"]
