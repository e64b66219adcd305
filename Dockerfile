# weighbridge's gateway in a container: `docker compose up` starts it with Redis and Postgres
# (compose.yaml). Two stages: wheels are built where a compiler is, the final image has none.
#   docker build -t weighbridge .                                  # gateway only (upstreams by URL)
#   docker build -t weighbridge --build-arg LLAMA_CPP=1 .          # also llama-cpp-python (in-process models)
ARG PYTHON=python:3.11-slim-bookworm

FROM ${PYTHON} AS build
ARG LLAMA_CPP=0
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy/gateway-requirements.txt ./
# weighbridge without its in-process engine and bundled models, the gateway's dependencies (Redis,
# Postgres, OpenTelemetry included); llama-cpp-python only when asked for
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && pip wheel --no-cache-dir --wheel-dir /wheels -r gateway-requirements.txt \
    && if [ "$LLAMA_CPP" = "1" ]; then CMAKE_ARGS="-DGGML_NATIVE=OFF" pip wheel --no-cache-dir --wheel-dir /wheels "llama-cpp-python[server]==0.3.36"; fi

FROM ${PYTHON}
RUN useradd --create-home --uid 10001 weighbridge
COPY --from=build /wheels /wheels
COPY deploy/gateway-requirements.txt /tmp/
RUN pip install --no-cache-dir --no-index --find-links /wheels -r /tmp/gateway-requirements.txt \
    && pip install --no-cache-dir --no-index --no-deps /wheels/weighbridge-*.whl \
    && if ls /wheels/llama_cpp_python-*.whl >/dev/null 2>&1; then \
         pip install --no-cache-dir --no-index --find-links /wheels "llama-cpp-python[server]"; fi \
    && rm -rf /wheels /tmp/gateway-requirements.txt
USER weighbridge
WORKDIR /home/weighbridge
EXPOSE 8080
# the plan (routes, upstreams, state, redis, audit) is mounted at /config/plan.yaml; keys are required
# to bind beyond loopback: create one with `docker compose run --rm gateway keys create NAME --plan /config/plan.yaml`
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz').status != 200)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["weighbridge"]
CMD ["serve", "--plan", "/config/plan.yaml", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
