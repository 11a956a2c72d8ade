# frozen_string_literal: true

# The start of each of cluster-action's Ruby runners: the project's bundle set up as `bundle
# exec` does, when it has a Gemfile (or BUNDLE_GEMFILE names one), and the framework loaded by
# cluster_action_require, which says so in a line cluster-action reads when it cannot be.

require "json"

cluster_action_gemfile = ENV.fetch("BUNDLE_GEMFILE", "Gemfile")
if File.exist?(cluster_action_gemfile)
  begin
    require "bundler/setup"
  rescue StandardError, LoadError => e
    warn "cluster-action: cannot set up the bundle of #{cluster_action_gemfile}: #{e.message}"
    exit 1
  end
end

def cluster_action_require(feature)
  require feature
rescue LoadError => e
  warn "cluster-action: cannot load #{feature} (#{e.message})"
  exit 127
end

