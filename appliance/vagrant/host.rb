# Host-side helpers for the Vagrantfile: which provider a command asks for, checks that turn the
# usual set-up mistakes into one line naming the fix, and the host network the lxc provider needs.
#
# vagrant-lxc's own private_network helper cannot find LXC 5's cgroups and its port forwarding
# crashes on Ruby 3 (docs/adr/0046), so with lxc each machine gets a second veth (eth1) on a
# bridge this file creates, at the same address the other providers give it, and no forwarded
# ports: the UIs are reached at the machine's own address.
require "fileutils"
require "ipaddr"
require "socket"
require "tmpdir"

module VigilHost
  PROVIDERS = %w[virtualbox libvirt lxc].freeze
  # The box each provider boots; VIGIL_BOX overrides all three (README, "Start it").
  BOXES = {
    "virtualbox" => "bento/debian-13",
    "libvirt" => "debian/trixie64",
    "lxc" => "vigil/trixie-lxc",
  }.freeze
  PLUGINS = { "libvirt" => "vagrant-libvirt", "lxc" => "vagrant-lxc" }.freeze
  LXC_BRIDGE = "vigilbr0"
  LXC_NET = "/usr/libexec/lxc/lxc-net"
  # Host-wide, so that whichever Vigil checkout destroys its last container stops lxc-net.
  LXC_NET_MARKER = "/run/vigil-started-lxc-net"

  module_function

  def fail!(message)
    abort "vigil: #{message}"
  end

  # The provider this command will use: --provider, else VAGRANT_DEFAULT_PROVIDER, else the one
  # an existing machine of this project was created with, else VirtualBox (Vagrant's default).
  def provider(argv, root)
    argv.each_with_index do |arg, i|
      return arg.split("=", 2)[1] if arg.start_with?("--provider=")
      return argv[i + 1] if arg == "--provider" && argv[i + 1]
    end
    return ENV["VAGRANT_DEFAULT_PROVIDER"] if ENV["VAGRANT_DEFAULT_PROVIDER"].to_s != ""
    created = Dir.glob(File.join(root, ".vagrant", "machines", "*", "*", "id")).map { |p| p.split("/")[-2] }
    created.first || "virtualbox"
  end

  def created?(root, machine, provider)
    File.exist?(File.join(root, ".vagrant", "machines", machine, provider, "id"))
  end

  def root?
    Process.uid.zero?
  end

  def box_registered?(name, provider)
    home = ENV.fetch("VAGRANT_HOME", File.join(Dir.home, ".vagrant.d"))
    !Dir.glob(File.join(home, "boxes", name.gsub("/", "-VAGRANTSLASH-"), "*", provider)).empty?
  end

  # Checks before `vagrant up` (and reload/provision where they matter). Each failure is one line.
  def preflight!(command:, provider:, root:, machines:, box:, forwards:)
    fail!("unknown provider #{provider.inspect}: use one of #{PROVIDERS.join(', ')}") unless PROVIDERS.include?(provider)
    plugin = PLUGINS[provider]
    if plugin && !Vagrant.has_plugin?(plugin)
      fix = provider == "lxc" ? "sudo apt-get install --no-install-recommends lxc vagrant-lxc" : "vagrant plugin install #{plugin}"
      fail!("the #{provider} provider needs the #{plugin} plugin: #{fix}")
    end
    return unless %w[up reload].include?(command)

    if provider == "lxc"
      unless root? || system("sudo", "-n", "true", out: File::NULL, err: File::NULL)
        fail!("the lxc provider needs root (containers, a bridge): run `sudo vagrant up --provider=lxc`")
      end
      unless box_registered?(box, "lxc") || ENV["VIGIL_BOX"]
        fail!("box #{box} is not registered: build it with `sudo make lxc-box` (debootstrap, about 3 minutes)")
      end
      check_private_network!(machines.map { |m| m[:ip] })
      machines.each { |m| check_address_free!(m, root) unless created?(root, m[:name], "lxc") }
    elsif provider == "virtualbox" && !system("VBoxManage", "--version", out: File::NULL, err: File::NULL)
      fail!("VirtualBox (VBoxManage) not found: install VirtualBox, or use --provider=libvirt or --provider=lxc")
    end
    forwards.each do |machine, ports|
      next if created?(root, machine, provider) # its own forwards hold these ports
      ports.each { |port| check_port_free!(port) }
    end
  end

  def check_port_free!(port)
    TCPServer.new("127.0.0.1", port).close
  rescue Errno::EADDRINUSE, Errno::EACCES
    fail!("port #{port} on 127.0.0.1 is in use: stop what holds it (`ss -ltnp 'sport = :#{port}'`) " \
          "or shift Vigil's ports with VIGIL_PORT_OFFSET=1000")
  end

  # The bridge's subnet must not be on another interface (a VirtualBox host-only network, say).
  def check_private_network!(ips)
    subnet = IPAddr.new("#{ips.first}/24")
    Socket.getifaddrs.each do |ifa|
      next unless ifa.addr&.ipv4? && ifa.name != LXC_BRIDGE
      if subnet.include?(ifa.addr.ip_address)
        fail!("#{subnet}/24 is already on #{ifa.name} (#{ifa.addr.ip_address}): remove it or bring Vigil " \
              "up with the provider that owns it")
      end
    end
  end

  # Another checkout's container on the same address (two `vagrant up`s at once) would make both
  # unreachable: LXC keeps each container's address in its config.
  def check_address_free!(machine, root)
    Dir.glob("/var/lib/lxc/*/config").each do |config|
      text = File.read(config) rescue next
      next unless text.include?("ipv4.address=#{machine[:ip]}/")

      other = text[/^lxc\.mount\.entry\s*=\s*(\S+) vagrant /, 1] || File.basename(File.dirname(config))
      next if other == root

      fail!("#{machine[:ip]} is taken by the LXC container #{File.basename(File.dirname(config))} " \
            "(from #{other}): `vagrant destroy` it there first")
    end
  end

  def sh!(*cmd)
    cmd = ["sudo", "-n", *cmd] unless root?
    system(*cmd, out: File::NULL) || fail!("`#{cmd.join(' ')}` failed")
  end

  # Host-wide lock around the network changes below: `vagrant up` of a cluster runs each
  # machine's before-up trigger in its own thread at once, and another checkout may be starting
  # or destroying its machines too; two `lxc-net start`s or `ip link add`s at once both fail.
  def with_network_lock
    File.open(File.join(Dir.tmpdir, "vigil-lxc-network.lock"), File::RDWR | File::CREAT, 0o644) do |lock|
      lock.flock(File::LOCK_EX)
      yield
    end
  end

  # Before an lxc machine starts: LXC's NAT bridge for eth0 (started by hand where no systemd
  # runs it, and remembered so destroy can stop it) and the project's private bridge for eth1.
  def lxc_network_up(gateway)
    with_network_lock { lxc_network_up_unlocked(gateway) }
  end

  def lxc_network_up_unlocked(gateway)
    unless File.exist?("/sys/class/net/lxcbr0")
      File.executable?(LXC_NET) || fail!("lxcbr0 is missing and #{LXC_NET} not found: install Debian's lxc")
      sh!(LXC_NET, "start")
      sh!("touch", LXC_NET_MARKER)
    end
    return if File.exist?("/sys/class/net/#{LXC_BRIDGE}")

    sh!("ip", "link", "add", LXC_BRIDGE, "type", "bridge")
    sh!("ip", "addr", "add", "#{gateway}/24", "dev", LXC_BRIDGE)
    sh!("ip", "link", "set", LXC_BRIDGE, "up")
  end

  # After the last lxc machine of the project is destroyed: remove what lxc_network_up made,
  # unless another project's containers are still attached to it.
  def lxc_network_down
    with_network_lock { lxc_network_down_unlocked }
  end

  def lxc_network_down_unlocked
    sh!("ip", "link", "del", LXC_BRIDGE) if bridge_unused?(LXC_BRIDGE)
    return unless File.exist?(LXC_NET_MARKER) && bridge_unused?("lxcbr0")

    sh!(LXC_NET, "stop")
    sh!("rm", "-f", LXC_NET_MARKER)
  end

  def bridge_unused?(name)
    File.exist?("/sys/class/net/#{name}") && Dir.empty?("/sys/class/net/#{name}/brif")
  end

  # A key pair only this cluster's controller holds, so it can reach the other machines over
  # SSH with every provider (libvirt's rsync never copies .vagrant/, where Vagrant keeps its own).
  def cluster_key(state_dir)
    key = File.join(state_dir, "vigil-cluster-key")
    unless File.exist?(key)
      FileUtils.mkdir_p(state_dir)
      system("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vigil-cluster", "-f", key) ||
        fail!("ssh-keygen failed: install OpenSSH's client (Debian: openssh-client)")
    end
    [key, File.read("#{key}.pub").strip]
  end
end
