# The registrator agent. BASE can point at any image with Python >= 3.11 and pip.
ARG BASE=python:3.11-slim
FROM ${BASE}
WORKDIR /src
COPY pyproject.toml README.md cli.py ./
COPY registrator ./registrator
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
ENTRYPOINT ["registrator"]
CMD ["run"]
