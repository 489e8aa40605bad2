-- Argo CD health check for ai.kubilitics.io AIRequest and AIPlan.
-- A plan awaiting approval is Suspended (a person must act), not Progressing.
local hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the kubilitics-ai operator"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local message = ""
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" and c.message ~= nil then
      message = c.message
    end
  end
end
local phase = obj.status.phase
if phase == "AwaitingApproval" then
  hs.status = "Suspended"
  local id = obj.status.planId or ""
  hs.message = "Plan " .. id .. " awaits an approval naming its exact plan id"
elseif phase == "Answered" or phase == "Succeeded" or phase == "Superseded" then
  hs.status = "Healthy"
  hs.message = message
elseif phase == "Failed" or phase == "Rejected" or phase == "Expired" or phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. message
else
  -- Pending, Planning, Approved, Executing, RollingBack
  hs.status = "Progressing"
  hs.message = phase .. ": " .. message
end
return hs
