// City suggestions for a postcode (progressive enhancement: forms work without it).
document.addEventListener("input", async (event) => {
  const input = event.target;
  if (!input.matches("[data-postcode]") || !/^\d{5}$/.test(input.value)) return;
  const response = await fetch(`/famille/communes?cp=${input.value}`);
  if (!response.ok) return;
  const { communes } = await response.json();
  const list = document.getElementById("communes");
  list.replaceChildren(...communes.map((name) => Object.assign(document.createElement("option"), { value: name })));
  const city = input.form.querySelector(`[name="${input.name.replace("postcode", "city")}"]`);
  if (city && !city.value && communes.length === 1) city.value = communes[0];
});
