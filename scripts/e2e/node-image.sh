#!/usr/bin/env bash
# Builds the kind node image for machines that reach no container registry, from the Go module
# proxy, Debian's packages and C sources only, and prints its name (gregor-kind-node:<k8s
# version>). kind's own `kind build node-image` cannot be used here: it calls `ctr info`, which
# Debian's containerd 1.6 lacks, and pulls images from registries. What it does instead:
#
#   1. Kubernetes $KUBE_VERSION binaries (scripts/kube-dist.sh), and with `go build` etcd,
#      CoreDNS, local-path-provisioner and crictl; pause compiled with `gcc -static` from
#      build/pause/linux/pause.c of the k8s.io/kubernetes module.
#   2. The images a node runs, under the exact names `kubeadm config images list` prints and
#      kind's storage manifest names, so kind's and kubeadm's manifests work unchanged:
#      FROM scratch around the static binaries; kube-proxy on a Debian root with iptables
#      (legacy or nft, chosen at first use as the node's own rules say) and conntrack; the
#      local-path helper from Debian's busybox-static.
#   3. The base image: a Debian bookworm root (debootstrap) with systemd, containerd, runc and
#      the CNI plugins, plus kind $KIND_VERSION's images/base/files from the Go module cache,
#      arranged as kind's base Dockerfile does.
#   4. The node image: the base plus kubelet, kubeadm, kubectl and crictl, /kind/version, kind's
#      storage manifest, and every image of step 2 imported into its containerd (pinned).
#
# Each step is cached: binaries and roots under ~/.cache/gregor/kind, images in Docker with a
# dev.gregor.stamp label; a second call returns at once. Needs root, a running Docker daemon
# (scripts/e2e/dockerd.sh), go, gcc and debootstrap.
#
# Env: KUBE_VERSION (v1.37.2), KIND_VERSION (v0.33.0), GREGOR_CACHE, DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"
source scripts/e2e/lib.sh
export DOCKER_BUILDKIT=0

node_image="gregor-kind-node:$KUBE_VERSION"
base_image="gregor-kind-base:bookworm"
# What the node image is made of; any change makes a new one.
node_stamp="$(cat scripts/e2e/node-image.sh scripts/e2e/lib.sh scripts/e2e/images/* |
  sha256sum | cut -c1-16) $KUBE_VERSION $KIND_VERSION"
if [[ "$(image_stamp "$node_image")" == "$node_stamp" ]]; then
  echo "$node_image"
  exit 0
fi

kube_bin="$(scripts/kube-dist.sh)"
kind_dir="$(go_module_dir "sigs.k8s.io/kind@$KIND_VERSION")"
k8s_dir="$(go_module_dir "k8s.io/kubernetes@$KUBE_VERSION")"
[[ -d "$kind_dir/images/base/files" ]] || e2e_fail "no images/base/files in $kind_dir"
gobin="$e2e_cache/bin"
mkdir -p "$gobin"
work="$(mktemp -d "$e2e_cache/work.XXXXXX")"
cleanup() {
  [[ -n "${cid:-}" ]] && docker rm -f "$cid" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1. binaries ----------------------------------------------------------------------------
# go_bin NAME MODULE VERSION PACKAGE: builds PACKAGE of MODULE@VERSION as $gobin/NAME-VERSION,
# inside a module of its own that requires it, so that modules with replace directives in
# their go.mod (etcd's) build too.
go_bin() {
  local name="$1" module="$2" version="$3" package="$4"
  local out="$gobin/$name-$version"
  if [[ ! -x "$out" ]]; then
    e2e_say "go build $package@$version (once)"
    local src="$work/go-$name"
    mkdir -p "$src"
    printf 'module gregor.dev/e2e-%s\n\ngo 1.26\n\nrequire %s %s\n' "$name" "$module" "$version" >"$src/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$package" >"$src/tools.go"
    (cd "$src" && GOFLAGS=-mod=mod go mod tidy -e >&2 &&
      CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out.tmp" "$package" >&2)
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

mapfile -t k8s_images < <("$kube_bin/kubeadm" config images list --kubernetes-version "$KUBE_VERSION")
image_version() { # image_version NAME: the tag kubeadm wants for the image named NAME
  local i
  for i in "${k8s_images[@]}"; do
    [[ "${i%:*}" == */"$1" ]] && { echo "${i##*:}"; return 0; }
  done
  e2e_fail "kubeadm lists no $1 image"
}
etcd_tag="$(image_version etcd)"          # 3.7.0-0
coredns_tag="$(image_version coredns)"    # v1.14.6
pause_tag="$(image_version pause)"        # 3.10.2
etcd_bin="$(go_bin etcd go.etcd.io/etcd/server/v3 "v${etcd_tag%-*}" go.etcd.io/etcd/server/v3)"
coredns_bin="$(go_bin coredns github.com/coredns/coredns "$coredns_tag" github.com/coredns/coredns)"
localpath_bin="$(go_bin local-path-provisioner github.com/rancher/local-path-provisioner v0.0.30 \
  github.com/rancher/local-path-provisioner)"
crictl_bin="$(go_bin crictl sigs.k8s.io/cri-tools "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl)"
pause_bin="$gobin/pause-$pause_tag"
if [[ ! -x "$pause_bin" ]]; then
  e2e_say "gcc -static pause.c"
  gcc -Os -static -DVERSION="v$pause_tag" -o "$pause_bin.tmp" "$k8s_dir/build/pause/linux/pause.c"
  strip "$pause_bin.tmp"
  mv "$pause_bin.tmp" "$pause_bin"
fi

# --- 2. the images a node runs ----------------------------------------------------------------
# build_image TAG DIR: docker build of DIR's Dockerfile, tagged TAG.
build_image() {
  docker build -q -t "$1" "$2" >/dev/null
}
# scratch_image TAG BINARY PATH [ENTRYPOINT]: FROM scratch with BINARY at PATH.
scratch_image() {
  local tag="$1" binary="$2" path="$3" entrypoint="${4:-}"
  local dir="$work/img-${tag//[\/:]/_}"
  mkdir -p "$dir"
  cp "$binary" "$dir/bin"
  {
    echo "FROM scratch"
    echo "COPY bin $path"
    echo "ENV PATH=/usr/local/bin:/usr/bin:/bin"
    [[ -n "$entrypoint" ]] && echo "ENTRYPOINT [\"$entrypoint\"]"
  } >"$dir/Dockerfile"
  build_image "$tag" "$dir"
}
registry="registry.k8s.io"
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  scratch_image "$registry/$c:$KUBE_VERSION" "$kube_bin/$c" "/usr/local/bin/$c"
done
scratch_image "$registry/etcd:$etcd_tag" "$etcd_bin" /usr/local/bin/etcd
scratch_image "$registry/coredns/coredns:$coredns_tag" "$coredns_bin" /coredns /coredns
scratch_image "$registry/pause:$pause_tag" "$pause_bin" /pause /pause
docker tag "$registry/pause:$pause_tag" "$registry/pause:3.10" # the name kind's containerd config uses

storage_manifest="$work/default-storage.yaml"
# kind's storage manifest is a Go raw string in const_storage.go; its image names are consts.
provisioner_image="$(sed -n 's/^const storageProvisionerImage = "\(.*\)"$/\1/p' "$kind_dir/pkg/build/nodeimage/const_storage.go")"
helper_image="$(sed -n 's/^const storageHelperImage = "\(.*\)"$/\1/p' "$kind_dir/pkg/build/nodeimage/const_storage.go")"
[[ -n "$provisioner_image" && -n "$helper_image" ]] || e2e_fail "no storage image names in kind's const_storage.go"
sed -n '/^const defaultStorageManifest = `/,/^`$/p' "$kind_dir/pkg/build/nodeimage/const_storage.go" |
  sed -e '1d' -e '$d' -e "s|\` + storageProvisionerImage + \`|$provisioner_image|" \
    -e "s|\` + storageHelperImage + \`|$helper_image|" >"$storage_manifest"
grep -q "image: $provisioner_image" "$storage_manifest" || e2e_fail "could not read kind's storage manifest"
scratch_image "$provisioner_image" "$localpath_bin" /usr/bin/local-path-provisioner

dir="$work/img-helper"
mkdir -p "$dir"
cp /usr/bin/busybox "$dir/busybox"
cat >"$dir/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
DOCKERFILE
build_image "$helper_image" "$dir"

# kube-proxy: on a Debian root with iptables and conntrack.
debian="$(scripts/e2e/debian-image.sh)"
dir="$work/img-kube-proxy"
mkdir -p "$dir"
cp "$kube_bin/kube-proxy" "$dir/kube-proxy"
cp scripts/e2e/images/iptables-wrapper.sh "$dir/iptables-wrapper"
cat >"$dir/Dockerfile" <<DOCKERFILE
FROM $debian
COPY kube-proxy /usr/local/bin/kube-proxy
COPY iptables-wrapper /usr/sbin/iptables-wrapper
RUN for t in iptables ip6tables; do for s in "" -save -restore; do \
      ln -sf /usr/sbin/iptables-wrapper /etc/alternatives/\$t\$s; done; done
DOCKERFILE
build_image "$registry/kube-proxy:$KUBE_VERSION" "$dir"

node_images=("${k8s_images[@]}" "$registry/pause:3.10" "$provisioner_image" "$helper_image")
for i in "${node_images[@]}"; do
  docker image inspect "$i" >/dev/null 2>&1 || e2e_fail "image $i was not built"
done

# --- 3. the base image ------------------------------------------------------------------------
base_tar="$(debian_root node-base systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,e2fsprogs,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins,iputils-ping,less)"
base_stamp="$(cat "$base_tar.stamp") $(cat scripts/e2e/node-image.sh scripts/e2e/images/pod-routes.sh | sha256sum | cut -c1-16) $KIND_VERSION"
if [[ "$(image_stamp "$base_image")" != "$base_stamp" ]]; then
  e2e_say "base image $base_image: Debian root + kind $KIND_VERSION's base files"
  r="$work/base"
  mkdir -p "$r"
  tar -C "$r" -xzf "$base_tar"
  f="$kind_dir/images/base/files"
  install -m 0755 "$f"/usr/local/bin/* "$r/usr/local/bin/"
  mkdir -p "$r/kind/bin" "$r/LICENSES" "$r/etc/containerd" "$r/etc/default" "$r/etc/sysctl.d" \
    "$r/etc/systemd/system/kubelet.service.d" "$r/etc/kubernetes/manifests"
  install -m 0644 "$f"/kind/README.txt "$r/kind/"
  install -m 0755 "$f"/kind/bin/* "$r/kind/bin/"
  install -m 0644 "$f"/etc/crictl.yaml "$r/etc/"
  install -m 0644 "$f"/etc/containerd/* "$r/etc/containerd/"
  install -m 0644 "$f"/etc/default/* "$r/etc/default/"
  install -m 0644 "$f"/etc/sysctl.d/* "$r/etc/sysctl.d/"
  install -m 0644 "$f"/etc/systemd/system/*.service "$f"/etc/systemd/system/*.slice "$r/etc/systemd/system/"
  install -m 0644 "$f"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
  # The capability wrapper of dockerd leaves the node without CAP_SYS_RESOURCE, which lowering
  # an oom_score_adj needs: kind's entrypoint sets this only for user namespaces.
  sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' "$r/etc/containerd/config.toml"
  # Debian's paths where kind's units and config expect its own builds.
  ln -sf /usr/bin/containerd "$r/usr/local/bin/containerd"
  mkdir -p "$r/opt/cni"
  rm -rf "$r/opt/cni/bin"
  ln -s /usr/lib/cni "$r/opt/cni/bin"
  ctr oci spec |
    jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
    jq 'del(.process.rlimits)' >"$r/etc/containerd/cri-base.json"
  # Pod routes to the other nodes (the local CNI path, scripts/e2e/pod-network.sh), set before
  # containerd and kubelet start, so a restarted node keeps reaching the other nodes' pods.
  install -m 0755 scripts/e2e/images/pod-routes.sh "$r/kind/bin/pod-routes.sh"
  cat >"$r/etc/systemd/system/gregor-pod-routes.service" <<'UNIT'
[Unit]
Description=Routes to the pod ranges of the other kind nodes (/kind/pod-routes)
Before=containerd.service kubelet.service
After=network.target
ConditionPathExists=/kind/pod-routes

[Service]
Type=oneshot
ExecStart=/kind/bin/pod-routes.sh
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
UNIT
  # kind's clean-up of the units a container must not run.
  find "$r/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
  rm -f "$r"/lib/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/*.wants/* \
    "$r"/lib/systemd/system/local-fs.target.wants/* "$r"/lib/systemd/system/sockets.target.wants/*udev* \
    "$r"/lib/systemd/system/sockets.target.wants/*initctl* "$r"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"$r/etc/systemd/journald.conf"
  ln -sf /usr/lib/systemd/systemd "$r/sbin/init"
  systemctl --root="$r" enable kubelet.service containerd.service undo-mount-hacks.service \
    gregor-pod-routes.service >/dev/null 2>&1
  systemctl --root="$r" mask systemd-binfmt.service >/dev/null 2>&1
  [[ -L "$r/etc/systemd/system/multi-user.target.wants/kubelet.service" ]] || e2e_fail "systemctl enable in the base root"
  tar -C "$r" --numeric-owner -cf - . |
    docker import --change 'ENV container=docker' \
      --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$base_image-import" >/dev/null
  rm -rf "$r"
  mkdir -p "$work/img-base"
  printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\nLABEL dev.gregor.stamp="%s"\n' "$base_image-import" "$base_stamp" \
    >"$work/img-base/Dockerfile"
  build_image "$base_image" "$work/img-base"
  docker rmi "$base_image-import" >/dev/null
fi

# --- 4. the node image -------------------------------------------------------------------------
e2e_say "node image $node_image"
# --init: containerd, started below by `docker exec`, is reparented to PID 1, which must reap it.
cid="$(docker create --init --privileged --entrypoint /bin/sleep "$base_image" infinity)"
docker start "$cid" >/dev/null
for b in kubelet kubeadm kubectl; do docker cp "$kube_bin/$b" "$cid:/usr/bin/$b"; done
docker cp "$crictl_bin" "$cid:/usr/local/bin/crictl"
echo "$KUBE_VERSION" >"$work/version"
docker exec "$cid" mkdir -p /kind/manifests
docker cp "$work/version" "$cid:/kind/version"
docker cp "$storage_manifest" "$cid:/kind/manifests/default-storage.yaml"
docker exec "$cid" sh -c 'containerd >/tmp/containerd.log 2>&1 & echo $! >/tmp/containerd.pid'
for _ in $(seq 30); do
  docker exec "$cid" ctr version >/dev/null 2>&1 && break
  sleep 1
done
docker save "${node_images[@]}" |
  docker exec -i "$cid" ctr -n k8s.io images import --all-platforms --no-unpack --digests - >/dev/null
for i in "${node_images[@]}"; do
  ref="$i"
  [[ "$ref" == docker.io/* || "$ref" == registry.k8s.io/* ]] || ref="docker.io/$ref"
  docker exec "$cid" ctr -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
done
docker exec "$cid" ctr -n k8s.io images ls -q >&2
docker exec "$cid" sh -c 'kill $(cat /tmp/containerd.pid); while kill -0 $(cat /tmp/containerd.pid) 2>/dev/null; do sleep 0.2; done; rm -f /tmp/containerd.*'
docker stop -t 1 "$cid" >/dev/null
docker commit \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'CMD []' \
  --change "LABEL dev.gregor.stamp=\"$node_stamp\"" \
  "$cid" "$node_image" >/dev/null
docker rm -f "$cid" >/dev/null
cid=""
e2e_say "$node_image: $(( $(docker image inspect -f '{{ .Size }}' "$node_image") / 1024 / 1024 )) MiB"
echo "$node_image"
