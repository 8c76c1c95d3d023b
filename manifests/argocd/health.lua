-- Argo CD health check for ml.tmd.dev/TrainedModelDeployment.
-- Reads what the operator writes (tmd/operator/reconcile.py _status):
--   observedGeneration, conditions Ready / Progressing / Degraded, routing_table, reason.
-- Healthy:     the operator has seen the current spec and Ready is True (fully allocated).
-- Degraded:    Degraded is True (allocations that cannot be placed, a failed route, an invalid
--              spec, a missing model) or every route has failed.
-- Progressing: anything else: not yet observed, workers starting, stopping.
local hs = {}

local function condition(status, type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the deployment"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message
  return hs
end

local routes, failed = 0, 0
if status.routing_table ~= nil then
  for _, route in pairs(status.routing_table) do
    routes = routes + 1
    if route.routing_state == "failed" then
      failed = failed + 1
    end
  end
end
if routes > 0 and failed == routes then
  hs.status = "Degraded"
  hs.message = status.reason or "All node routes are failed; see node route reason for details"
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "Waiting for allocations to start"
end
return hs
