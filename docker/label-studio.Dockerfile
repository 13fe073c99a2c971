# Label Studio 1.23 for the compose stack, built from the `label-studio` package on the same
# base (its public image is heartexlabs/label-studio:1.23.2 where Docker Hub is reachable).
ARG BASE=clicksmith-base:bookworm
FROM ${BASE} AS build
COPY docker/build-extras/ /tmp/build-extras/
COPY docker/pip-install.sh /usr/local/bin/pip-install
ENV PATH=/opt/label-studio/bin:$PATH PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/label-studio && pip-install "label-studio==1.23.2"

FROM ${BASE}
COPY --from=build /opt/label-studio /opt/label-studio
ENV PATH=/opt/label-studio/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LABEL_STUDIO_BASE_DATA_DIR=/label-studio/data
RUN useradd --create-home --uid 10002 --shell /usr/sbin/nologin labelstudio \
    && mkdir -p /label-studio/data && chown -R labelstudio:labelstudio /label-studio
USER 10002:10002
VOLUME ["/label-studio/data"]
EXPOSE 8080
# the first start creates the user and its fixed legacy token (the backend's LABEL_STUDIO_API_KEY)
ENV LABEL_STUDIO_HOST_BIND=0.0.0.0 LABEL_STUDIO_PORT=8080
CMD ["sh", "-c", "exec label-studio start --host \"$LABEL_STUDIO_HOST_BIND\" --port \"$LABEL_STUDIO_PORT\" --no-browser --username \"$LABEL_STUDIO_USERNAME\" --password \"$LABEL_STUDIO_PASSWORD\" --user-token \"$LABEL_STUDIO_USER_TOKEN\" --enable-legacy-api-token"]
