# A federation member: `docker build -t pegout .` then
#   docker run -v /srv/pegout:/data -v /etc/pegout:/config:ro pegout --config /config/member.json
# The addon links libsecp256k1 statically, so the runtime image needs no secp256k1 package.

FROM node:20-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libsecp256k1-dev g++ make python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json binding.gyp ./
COPY scripts ./scripts
COPY native ./native
# The locked versions, as scripts/setup.sh installs them (not `npm ci`: the lock holds only the
# linux-x64 builds of anvil's and msgpackr's optional packages, and npm ci refuses it for the
# others). Our root install script builds the addon; the image fails if it fell back to JS.
RUN npm install --no-save --no-audit --no-fund && test -f build/Release/pegout_secp256k1.node
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY contracts ./contracts
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/build/Release ./build/Release
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
USER node
VOLUME ["/data"]
EXPOSE 7700 8080
# a young generation that a round's records die in (src/devnet/federation.ts SHARED_CORE_NODE_FLAGS; a
# member with cores of its own keeps V8's parallel collector)
ENTRYPOINT ["node", "--max-semi-space-size=64", "bin/pegout.js", "node"]
CMD ["--config", "/config/member.json"]
