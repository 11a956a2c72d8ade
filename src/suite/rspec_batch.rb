# cluster-action's runner of RSpec, for its listing (with --dry-run) and its batches (shipped
# to the workers beside the suite):
#
#   ruby cluster_action_rspec.rb IDS REPORT [RSPEC ARGS...]
#
# runs RSpec in this process with the arguments and the example ids in the file IDS (one a
# line; none when IDS is empty), so that no command line holds them however many they are.
# RSpec's own JSON report ends up in REPORT. While RSpec runs, REPORT holds a JSON line per
# example that started (its id) and per example that ended (the shape of an example of RSpec's
# JSON), so that a batch killed part-way still says which examples finished and which one was
# running; RSpec's JSON replaces it at the end.
#
# It follows ruby_prelude.rb, which sets up the project's bundle.

cluster_action_require "rspec/core"

# Writes a JSON line when an example starts (its id) and when it ends (the example as RSpec's
# JSON has it) to its output, flushed at once.
class ClusterActionProgress
  RSpec::Core::Formatters.register self, :example_started, :example_passed, :example_failed,
                                   :example_pending

  def initialize(output)
    @output = output
  end

  def example_started(notification)
    @output.puts(JSON.generate(started: notification.example.id))
    @output.flush
  end

  def example_passed(notification)
    write(notification.example)
  end

  def example_failed(notification)
    write(notification.example)
  end

  def example_pending(notification)
    write(notification.example)
  end

  private

  def write(example)
    result = example.execution_result
    line = {
      id: example.id,
      full_description: example.full_description,
      status: result.status.to_s,
      run_time: result.run_time,
      pending_message: result.pending_message
    }
    error = result.exception
    if error && result.status == :failed
      line[:exception] = {
        class: error.class.name,
        message: error.message,
        backtrace: error.backtrace
      }
    end
    @output.puts(JSON.generate(line))
    @output.flush
  end
end

ids_file, report, *args = ARGV
ids = ids_file.to_s.empty? ? [] : File.read(ids_file, encoding: "UTF-8").split("\n")
json = "#{report}.json"
args += ["--format", "json", "--out", json, "--format", "ClusterActionProgress", "--out", report]
RSpec::Core::Runner.disable_autorun!
# RSpec runs its default path (spec/) when given no files only under the name `rspec`.
$PROGRAM_NAME = "rspec"
status = RSpec::Core::Runner.run(args + ids, $stderr, $stdout).to_i
File.rename(json, report) if File.exist?(json)
exit status
