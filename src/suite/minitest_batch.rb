# cluster-action's runner of Minitest, for its listing and its batches (shipped to the workers
# beside the suite):
#
#   ruby cluster_action_minitest.rb list OUT [ARGS...]
#   ruby cluster_action_minitest.rb run IDS FILES REPORT [ARGS...]
#
# ARGS are the suite's: test files, directories and globs (by default test/**/*_test.rb and
# test/**/test_*.rb; a directory stands for those patterns under it), `-I DIR` for the load
# path (lib/ and test/ are on it, as a Rakefile's test task puts them), and Minitest's own
# options (`-n`, `-e`, `--seed`, a plugin's), which the listing applies and the batches pass
# to Minitest.
#
# `list` loads the test files and writes to OUT, one JSON object a line, every test Minitest
# would run: its id `Class#method`, class, method and the file whose loading defined it.
# `run` loads the files listed in FILES and runs exactly the tests whose ids are in IDS (one a
# line), each runnable class keeping only its methods named there, with a reporter that
# writes to REPORT a JSON line per test that starts and per test that ends, a line per file
# that failed to load, and a last line once Minitest is done. Neither the ids nor the files
# are ever a command line.
#
# It follows ruby_prelude.rb, which sets up the project's bundle.

require "set"

cluster_action_require "minitest"

# Test files that `require "minitest/autorun"` must not start a run of their own at exit.
Minitest.class_variable_set(:@@installed_at_exit, true)

# The suite's arguments, read as the two modes need them.
module ClusterActionArgs
  # Minitest's options that take the next word as their value.
  VALUE_OPTIONS = %w[-s --seed -n --name -e --exclude -S --skip].freeze

  DEFAULT_PATTERNS = ["test/**/*_test.rb", "test/**/test_*.rb"].freeze

  # [load path directories, test file patterns, Minitest's options] of `args`.
  def self.split(args)
    load_path = []
    patterns = []
    options = []
    words = args.dup
    until words.empty?
      word = words.shift
      if word == "-I"
        load_path << words.shift.to_s
      elsif word.start_with?("-I")
        load_path << word[2..]
      elsif word.start_with?("-") && word.length > 1
        options << word
        options << words.shift if VALUE_OPTIONS.include?(word) && !words.empty?
      elsif File.exist?(word) || word.match?(/[*?\[{]/)
        patterns << word
      else
        # The value of a plugin's option.
        options << word
      end
    end
    [load_path, patterns, options]
  end

  # The test files `patterns` name, sorted, each once, relative as given.
  def self.files(patterns)
    patterns = DEFAULT_PATTERNS if patterns.empty?
    patterns.flat_map do |pattern|
      if File.directory?(pattern)
        DEFAULT_PATTERNS.flat_map { |p| Dir.glob(File.join(pattern, p.delete_prefix("test/"))) }
      else
        Dir.glob(pattern)
      end
    end.sort.uniq
  end

  def self.setup_load_path(dirs)
    (dirs + %w[test lib]).reverse_each do |dir|
      path = File.expand_path(dir)
      $LOAD_PATH.unshift(path) if File.directory?(path) && !$LOAD_PATH.include?(path)
    end
  end
end

# Every test Minitest knows now, as [class name, method] pairs.
def cluster_action_tests
  Minitest::Runnable.runnables.flat_map do |klass|
    next [] if klass.name.nil?
    klass.runnable_methods.map { |method| [klass.to_s, method] }
  end
end

# What a test file that failed to load raised, and where.
def cluster_action_load_error(file, error)
  trace = Minitest.filter_backtrace(error.backtrace || []).first(10)
  (["cannot load #{file}: #{error.class}: #{error.message}"] + trace).join("\n")
end

# The result lines of a batch, each written and flushed as it comes.
class ClusterActionReporter < Minitest::AbstractReporter
  def initialize(io)
    super()
    @io = io
  end

  def prerecord(klass, name)
    write(started: "#{klass}##{name}")
  end

  def record(result)
    status =
      if result.skipped? then "skipped"
      elsif result.error? then "error"
      elsif result.passed? then "passed"
      else "failed"
      end
    failure = result.failure
    output = result.failures.map do |f|
      backtrace = Minitest.filter_backtrace(f.backtrace || [])
      location = f.is_a?(Minitest::UnexpectedError) ? [] : backtrace.first(1)
      (["#{f.result_label}: #{f.message}"] + location).join("\n")
    end
    write(
      id: "#{result.klass}##{result.name}",
      status: status,
      time: result.time,
      message: failure&.message,
      output: output.join("\n\n")
    )
  end

  def report
    write(done: true)
  end

  def write(line)
    @io.puts(JSON.generate(line))
    @io.flush
  end
end

mode, *rest = ARGV
case mode
when "list"
  out, *args = rest
  load_path, patterns, options = ClusterActionArgs.split(args)
  ClusterActionArgs.setup_load_path(load_path)
  # Minitest's own options (`-n`, `-e`) select as they would in a run, and an unknown one
  # fails here; the seed is what runnable_methods orders by.
  plugins = !(options.include?("--no-plugins") || ENV["MT_NO_PLUGINS"])
  Minitest.load_plugins if plugins
  selected = Minitest.process_args(options.dup)
  Minitest.seed = selected[:seed]
  filter = selected[:filter] || "/./"
  filter = Regexp.new(Regexp.last_match(1)) if filter.is_a?(String) && filter =~ %r{/(.*)/}
  exclude = selected[:exclude]
  exclude = Regexp.new(Regexp.last_match(1)) if exclude.is_a?(String) && exclude =~ %r{/(.*)/}
  tests = ClusterActionArgs.files(patterns).flat_map do |file|
    before = cluster_action_tests
    begin
      require File.expand_path(file)
    rescue Exception => e # rubocop:disable Lint/RescueException: a test file may raise anything
      raise if e.is_a?(SystemExit) || e.is_a?(Interrupt)

      warn cluster_action_load_error(file, e)
      exit 1
    end
    (cluster_action_tests - before).sort.map { |klass, method| [klass, method, file] }
  end
  File.open(out, "w") do |io|
    tests.each do |klass, method, file|
      id = "#{klass}##{method}"
      next unless filter === method || filter === id
      next if exclude === method || exclude === id

      io.puts(JSON.generate(id: id, class: klass, method: method, file: file))
    end
  end
when "run"
  ids_file, files_file, report, *args = rest
  load_path, _patterns, options = ClusterActionArgs.split(args)
  ClusterActionArgs.setup_load_path(load_path)
  io = File.open(report, "w")
  reporter = ClusterActionReporter.new(io)
  File.read(files_file, encoding: "UTF-8").split("\n").each do |file|
    require File.expand_path(file)
  rescue Exception => e # rubocop:disable Lint/RescueException: a test file may raise anything
    raise if e.is_a?(SystemExit) || e.is_a?(Interrupt)

    reporter.write(error: cluster_action_load_error(file, e))
  end
  ids = File.read(ids_file, encoding: "UTF-8").split("\n").to_set
  Minitest::Runnable.runnables.each do |klass|
    klass.singleton_class.prepend(Module.new do
      define_method(:runnable_methods) { super().select { |m| ids.include?("#{self}##{m}") } }
    end)
  end
  plugins = !(options.include?("--no-plugins") || ENV["MT_NO_PLUGINS"])
  Minitest.load_plugins if plugins
  Minitest.extensions << "cluster_action"
  Minitest.define_singleton_method(:plugin_cluster_action_init) do |_options|
    Minitest.reporter << reporter
  end
  passed = Minitest.run(options)
  Minitest.class_variable_get(:@@after_run).reverse_each(&:call)
  exit(passed ? 0 : 1)
else
  warn "usage: #{$PROGRAM_NAME} list OUT [ARGS...] | run IDS FILES REPORT [ARGS...]"
  exit 2
end
